"""format_count: unit choice, significant digits, rounding edges, bad input."""

from __future__ import annotations

import pytest

from decayprune.measure import format_count


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (512, "512"),
        (999, "999"),
        (1_234, "1.23K"),
        (99_999, "100K"),
        (100_000, "0.10M"),
        (272_474, "0.27M"),
        (853_018, "0.85M"),
        (1_230_000, "1.23M"),
        (9_999_999, "10.0M"),
        (41_407_114, "41.4M"),
        (313_000_000, "313M"),
        (1_230_000_000, "1.23G"),
        (-1_234, "-1.23K"),
        (999.6, "1.00K"),
    ],
)
def test_format(n: float, text: str) -> None:
    assert format_count(n) == text


def test_bad_input() -> None:
    with pytest.raises(TypeError):
        format_count("12")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_count(True)
    with pytest.raises(ValueError, match="finite"):
        format_count(float("inf"))
