"""When a method selects: the selection points of a pruning run, a pure function of its settings.

The MACs budget tightens linearly over the selection points: after the k-th of K selections
the model may keep ``base - (base - final) * k / K`` MACs.

Room for recovery: a decay that starts at step ``k`` ends at ``k + N`` (``N = decay.steps``; 0
for ``oneshot``), and the run keeps a margin of ``ceil(r * total_steps)`` steps after the last
decay ends, ``r = PruneSettings.recovery_share()``: ``recovery_fraction`` when given; otherwise
0.5 (the whole pruning phase, SR backfills included, in the first half of the run) when the
schedule is left to decayprune, 0.1 when ``end_epoch`` or ``decay.steps`` is set. So no decay
may start after ``last_start = total - margin - N``: the Pruner refuses selections after it, and
self-rectifying stops releasing after it (a release could no longer be backfilled in time). A
config whose selections cannot fit is refused before training
(:class:`~decayprune.errors.ScheduleError`, with the arithmetic). When ``decay.steps`` is left
unset and its default (100) does not fit the run, N is fitted: half the steps between the first
selection and the default end of the pruning phase (at least 1).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from ..config.prune import PruneSettings
from ..errors import ScheduleError

__all__ = ["SelectionSchedule"]


def _recovery_margin(settings: PruneSettings, total_steps: int) -> int:
    return math.ceil(settings.recovery_share() * total_steps)


@dataclass(frozen=True)
class SelectionSchedule:
    """The optimizer steps (counted from 1) at which a method selects, in increasing order.

    ``last_start`` is the last step at which a decay may begin (None: no limit); ``decay_steps``
    the N in force (fitted to the run when ``decay.steps`` was left unset).

    Example:
        >>> s = SelectionSchedule((10, 20, 30), last_start=60)
        >>> s.is_selection_step(20), s.in_pruning_phase(31), s.fraction_done(25), s.can_start(61)
        (True, False, 0.6666666666666666, False)
    """

    steps: tuple[int, ...]
    last_start: int | None = None
    decay_steps: int = 0

    def __post_init__(self) -> None:
        if not self.steps or list(self.steps) != sorted(set(self.steps)) or self.steps[0] < 1:
            raise ValueError(f"selection steps must be increasing and >= 1, got {self.steps}")

    @classmethod
    def from_settings(cls, settings: PruneSettings, total_steps: int, steps_per_epoch: int) -> "SelectionSchedule":
        """Selection points from ``start_epoch``, ``end_epoch`` and ``iterative_steps``.

        Without ``end_epoch`` the last selection leaves room for the decay (N steps, for the
        DPM policies) and the recovery margin (at least a quarter of the run).
        Raises :class:`~decayprune.errors.ScheduleError` when a selection's decay cannot end
        the recovery margin before the run's end.

        Example:
            >>> p = PruneSettings(target_macs_fraction=0.5, iterative_steps=3, decay={"policy": "oneshot"})
            >>> SelectionSchedule.from_settings(p, total_steps=100, steps_per_epoch=10).steps
            (1, 25, 50)
            >>> s = SelectionSchedule.from_settings(PruneSettings(target_macs_fraction=0.5), 100, 10)
            >>> s.decay_steps, s.steps, s.last_start
            (24, (1,), 26)
        """
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        start = cls.first_step(settings, steps_per_epoch)
        margin = _recovery_margin(settings, total_steps)
        recovery = max(total_steps // 4, margin)
        explicit_end = cls.end_step(settings, steps_per_epoch)
        decay = cls._decay_steps(settings, total_steps, start, margin, recovery, explicit_end)
        last_start = total_steps - margin - decay
        if settings.decay.smooth and last_start < start and "steps" not in settings.decay.model_fields_set:
            last_start = start  # the too-short run _decay_steps warned about: its one selection only
        if explicit_end is not None:
            end = explicit_end
        else:
            end = min(max(start, total_steps - decay - recovery), last_start)
        if end < start:
            raise ValueError(f"pruning ends (step {end}) before it starts (step {start})")
        if end > last_start:
            what = f"a decay of N = {decay} steps (decay.steps) " if decay else "a selection "
            raise ScheduleError(
                f"end_epoch: the last selection at step {end} + {what}+ a recovery margin of {margin} steps "
                f"(recovery_fraction {settings.recovery_share()} of {total_steps}) = {end + decay + margin} > "
                f"{total_steps} steps in the run; allowed: a last selection at step <= {last_start}, a shorter "
                "decay, a smaller recovery_fraction or a longer run"
            )
        k = settings.selection_points()
        if k == 1:
            return cls((start,), last_start, decay)
        return cls(tuple(sorted({start + round(i * (end - start) / (k - 1)) for i in range(k)})), last_start, decay)

    @staticmethod
    def first_step(settings: PruneSettings, steps_per_epoch: int) -> int:
        """The step of the first selection: ``start_epoch`` in steps, at least 1."""
        return max(1, int(round(settings.start_epoch * steps_per_epoch)))

    @staticmethod
    def end_step(settings: PruneSettings, steps_per_epoch: int) -> int | None:
        """The step ``end_epoch`` names (None when it is unset)."""
        return None if settings.end_epoch is None else int(round(settings.end_epoch * steps_per_epoch))

    def fit(self, settings: PruneSettings) -> PruneSettings:
        """``settings`` with the N in force: ``decay.steps`` replaced by :attr:`decay_steps` where they differ.

        The one place the fitted N reaches the settings (the Pruner's engine, the job's record).

        Example:
            >>> p = PruneSettings(target_macs_fraction=0.5)
            >>> s = SelectionSchedule.from_settings(p, 100, 10)
            >>> oneshot = PruneSettings(target_macs_fraction=0.5, decay={"policy": "oneshot"})
            >>> p.decay.steps, s.fit(p).decay.steps, s.fit(oneshot).decay.steps
            (100, 24, 100)
        """
        if not settings.decay.smooth or self.decay_steps == settings.decay.steps:
            return settings
        return settings.model_copy(update={"decay": settings.decay.model_copy(update={"steps": self.decay_steps})})

    @staticmethod
    def _decay_steps(
        settings: PruneSettings, total: int, start: int, margin: int, recovery: int, end: int | None
    ) -> int:
        """N in force: ``decay.steps``, or a fitted N when it was left unset and does not fit."""
        if not settings.decay.smooth:
            return 0
        n = settings.decay.steps
        latest = end if end is not None else start
        if n + margin + latest <= total or "steps" in settings.decay.model_fields_set:
            if latest + n + margin > total:
                raise ScheduleError(
                    f"decay.steps: a selection at step {latest} + a decay of N = {n} steps + a recovery margin of "
                    f"{margin} steps (recovery_fraction {settings.recovery_share()} of {total}) = "
                    f"{latest + n + margin} > {total} steps in the run; allowed: decay.steps <= "
                    f"{max(total - margin - latest, 0)} (0 means no room: a later start is impossible), an earlier "
                    "start_epoch / end_epoch, a smaller recovery_fraction or a longer run"
                )
            return n
        if end is not None:
            fitted = total - margin - end
        else:
            fitted = (total - recovery - start) // 2
        if fitted < 1 and not settings.model_fields_set & {"end_epoch", "recovery_fraction"}:
            # Nothing of the schedule was set and the run is too short for any decay (e.g. a Pruner used
            # only to score structures, total_steps=1): one step, without the margin, and a warning.
            warnings.warn(
                f"a run of {total} steps has no room for a decay and a recovery margin of {margin} steps after the "
                f"selection at step {latest}: decay.steps is set to 1 and the margin is not kept",
                stacklevel=4,
            )
            return 1
        if fitted < 1:
            raise ScheduleError(
                f"decay.steps: no room for a decay: the run has {total} steps, the first selection is at step "
                f"{latest} and the recovery margin is {margin} steps (recovery_fraction {settings.recovery_share()})"
                "; allowed: an earlier start_epoch, a smaller recovery_fraction or a longer run"
            )
        return min(n, fitted)

    def can_start(self, step: int) -> bool:
        """True when a decay starting at ``step`` still ends a recovery margin before the run's end."""
        return self.last_start is None or step <= self.last_start

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
