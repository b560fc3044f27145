"""Checks before work: refuse a pruning schedule that cannot prune in the run it is given.

Example:
    >>> from decayprune.config import PruneSettings
    >>> p = PruneSettings(target_macs_fraction=0.5, start_epoch=5)
    >>> try:
    ...     check_schedule(p, epochs=3, steps_per_epoch=10)
    ... except ScheduleError as exc:
    ...     print(str(exc)[:57])
    prune.start_epoch=5 is at step 50, after the last step of
"""

from __future__ import annotations

from ..config import PruneSettings
from ..errors import ScheduleError
from ..methods.schedule import SelectionSchedule

__all__ = ["check_schedule"]


def check_schedule(prune: PruneSettings, *, epochs: int, steps_per_epoch: int) -> SelectionSchedule:
    """The selection schedule of a prune run, or :class:`ScheduleError` with the arithmetic.

    Refused: a first selection after the last step, an ``end_epoch`` before ``start_epoch`` or after
    the run, and (sp, sp+sr) a decay of ``decay.steps`` that would not end before the run does.
    """
    total = epochs * steps_per_epoch
    run = f"finetune.epochs={epochs} x {steps_per_epoch} steps per epoch = {total} steps"
    start = SelectionSchedule.first_step(prune, steps_per_epoch)
    if start > total:
        raise ScheduleError(
            f"prune.start_epoch={prune.start_epoch:g} is at step {start}, after the last step of the run ({run}); "
            f"nothing would be pruned. Use a start_epoch below {epochs}"
        )
    end = SelectionSchedule.end_step(prune, steps_per_epoch)
    if end is not None:
        if end < start or end > total:
            raise ScheduleError(
                f"prune.end_epoch={prune.end_epoch:g} is at step {end}; it must lie between start_epoch "
                f"(step {start}) and the end of the run ({run})"
            )
    try:
        schedule = SelectionSchedule.from_settings(prune, total_steps=total, steps_per_epoch=steps_per_epoch)
    except ValueError as exc:
        raise ScheduleError(f"the prune schedule does not fit the run ({run}): {exc}") from None
    decay = schedule.fit(prune).decay  # decay.steps: the N in force
    n = decay.steps
    if decay.smooth and schedule.steps[-1] + n > total:
        last = schedule.steps[-1]
        raise ScheduleError(
            f"prune.decay.steps={n} is too long: the last selection (step {last}) plus N={n} "
            f"decay steps = step {last + n}, past the end of the run ({run}); the decay would be cut "
            f"short. Use decay.steps <= {max(1, total - last)}, more finetune epochs, or an earlier end_epoch"
        )
    return schedule
