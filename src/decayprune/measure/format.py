"""Compact human-readable counts (``0.85M``, ``41.4M``, ``1.23G``)."""

from __future__ import annotations

import math
import numbers

__all__ = ["format_count"]

#: (smallest value shown in this unit, divisor, suffix)
_UNITS: tuple[tuple[float, float, str], ...] = ((1e9, 1e9, "G"), (1e5, 1e6, "M"), (1e3, 1e3, "K"))


def format_count(n: int) -> str:
    """Format a parameter or MAC count with a unit suffix and three significant digits.

    Counts of 1e9 and above use ``G``; from 1e5 on ``M`` (so 853,018 reads ``0.85M``, the
    usual way papers report small models); from 1e3 on ``K``; smaller counts are printed as
    integers. Values below 10 units keep two decimals, below 100 one, else none.

    Args:
        n: A finite count (ints expected; floats are accepted and rounded for small values).

    Returns:
        The formatted string, with a leading ``-`` for negative counts (e.g. differences).

    Raises:
        TypeError: If ``n`` is not a real number.
        ValueError: If ``n`` is NaN or infinite.

    Example:
        >>> format_count(853_018), format_count(41_407_114), format_count(1_230_000_000), format_count(512)
        ('0.85M', '41.4M', '1.23G', '512')
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Real):
        raise TypeError(f"format_count expects a number, got {type(n).__name__}: {n!r}")
    value = float(n)
    if not math.isfinite(value):
        raise ValueError(f"format_count expects a finite number, got {n!r}")
    sign, value = ("-" if value < 0 else ""), abs(value)
    if value < 1e3:
        value = float(round(value))  # 999.6 -> 1000 -> "1.00K"
    for threshold, divisor, suffix in _UNITS:
        if value >= threshold:
            return sign + _three_digits(value / divisor) + suffix
    return sign + str(int(round(value)))


def _three_digits(v: float) -> str:
    """Two decimals below 10, one below 100, none above; re-checked after rounding."""
    for decimals, limit in ((2, 10.0), (1, 100.0)):
        text = f"{v:.{decimals}f}"
        if float(text) < limit:
            return text
    return f"{v:.0f}"
