"""Gradual sparsity schedules: the target sparsity as a pure function of the step.

``oneshot`` jumps to the target at ``begin``; ``linear`` ramps from ``initial`` to the target
between ``begin`` and ``end``; ``cubic`` is Zhu & Gupta's (2017) schedule
``s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (n * dt))^3``, which prunes fast early and slowly
near the end. With ``every`` the ramp advances only on every ``every``-th step after ``begin``
(the pruning frequency ``dt``).
"""

from __future__ import annotations

__all__ = ["SCHEDULES", "sparsity_at"]

SCHEDULES = ("oneshot", "linear", "cubic")


def sparsity_at(
    step: int,
    *,
    target: float,
    begin: int,
    end: int,
    kind: str = "cubic",
    initial: float = 0.0,
    every: int = 1,
) -> float:
    """Target sparsity at ``step``.

    Example:
        >>> [round(sparsity_at(t, target=0.9, begin=0, end=10), 4) for t in (0, 5, 10, 20)]
        [0.0, 0.7875, 0.9, 0.9]
        >>> [sparsity_at(t, target=0.8, begin=4, end=9, kind="oneshot") for t in (3, 4)]
        [0.0, 0.8]
    """
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")
    if end < begin or every < 1:
        raise ValueError(f"need begin <= end and every >= 1, got begin={begin}, end={end}, every={every}")
    if step < begin:
        return initial
    if kind == "oneshot" or end == begin:
        return target
    done = min(step - begin, end - begin)
    done -= done % every if step < end else 0
    frac = done / (end - begin)
    if kind == "linear":
        return initial + (target - initial) * frac
    return target + (initial - target) * (1.0 - frac) ** 3
