"""The one binary search over prefixes of a ranking: the fewest units whose removal meets a MACs budget."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["smallest_prefix"]


def smallest_prefix(macs_with: Callable[[int], float], upper: int, budget: float) -> int:
    """The smallest ``k`` in ``0 .. upper`` with ``macs_with(k) <= budget``; ``upper`` when none is.

    ``macs_with(k)`` is the cost with the first ``k`` units of a ranking removed; it must not grow
    with ``k`` (removing more never adds MACs), which makes the answer a binary search.

    Example:
        >>> smallest_prefix(lambda k: 100 - 10 * k, upper=8, budget=55)
        5
        >>> smallest_prefix(lambda k: 100 - 10 * k, upper=3, budget=55)
        3
    """
    if macs_with(upper) > budget:
        return upper
    lo, hi = 0, upper
    while lo < hi:
        mid = (lo + hi) // 2
        if macs_with(mid) <= budget:
            hi = mid
        else:
            lo = mid + 1
    return lo
