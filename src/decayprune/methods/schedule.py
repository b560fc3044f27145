"""When a method selects: the selection points of a pruning run, a pure function of its settings.

The MACs budget tightens linearly over the selection points: after the k-th of K selections
the model may keep ``base - (base - final) * k / K`` MACs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.prune import PruneSettings

__all__ = ["SelectionSchedule"]


@dataclass(frozen=True)
class SelectionSchedule:
    """The optimizer steps (counted from 1) at which a method selects, in increasing order.

    Example:
        >>> s = SelectionSchedule((10, 20, 30))
        >>> s.is_selection_step(20), s.in_pruning_phase(31), s.fraction_done(25)
        (True, False, 0.6666666666666666)
    """

    steps: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.steps or list(self.steps) != sorted(set(self.steps)) or self.steps[0] < 1:
            raise ValueError(f"selection steps must be increasing and >= 1, got {self.steps}")

    @classmethod
    def from_settings(cls, settings: PruneSettings, total_steps: int, steps_per_epoch: int) -> "SelectionSchedule":
        """Selection points from ``start_epoch``, ``end_epoch`` and ``iterative_steps``.

        Without ``end_epoch`` the last selection leaves room for the decay (N steps, for the
        DPM policies) and a quarter of the run for recovery.

        Example:
            >>> p = PruneSettings(target_macs_fraction=0.5, iterative_steps=3, decay={"policy": "oneshot"})
            >>> SelectionSchedule.from_settings(p, total_steps=100, steps_per_epoch=10).steps
            (1, 38, 75)
        """
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        start = max(1, int(round(settings.start_epoch * steps_per_epoch)))
        if settings.end_epoch is not None:
            end = int(round(settings.end_epoch * steps_per_epoch))
        else:
            decay = settings.decay.steps if settings.decay.smooth else 0
            end = max(start, total_steps - decay - total_steps // 4)
        if end < start:
            raise ValueError(f"pruning ends (step {end}) before it starts (step {start})")
        k = settings.iterative_steps
        if k == 1:
            return cls((start,))
        return cls(tuple(sorted({start + round(i * (end - start) / (k - 1)) for i in range(k)})))

    def is_selection_step(self, step: int) -> bool:
        """True when ``step`` is a selection point."""
        return step in self.steps

    def in_pruning_phase(self, step: int) -> bool:
        """True up to the last selection point (regularisers use it)."""
        return step <= self.steps[-1]

    def fraction_done(self, step: int) -> float:
        """Share of the selection points reached by ``step`` (0 before the first, 1 after the last)."""
        return sum(1 for s in self.steps if s <= step) / len(self.steps)

    def macs_budget(self, step: int, base_macs: float, final_macs: float) -> float:
        """The MACs the model may keep at ``step``: linear from base to final over the selections."""
        return base_macs - (base_macs - final_macs) * self.fraction_done(step)
