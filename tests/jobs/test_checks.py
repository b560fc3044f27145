"""A schedule that cannot prune is refused before any work, with the arithmetic."""

from __future__ import annotations

import pytest

from decayprune.config import PruneSettings
from decayprune.errors import ScheduleError
from decayprune.jobs import check_schedule


def _prune(**kw) -> PruneSettings:
    return PruneSettings(target_macs_fraction=0.5, **kw)


def test_a_fitting_schedule_is_returned() -> None:
    schedule = check_schedule(
        _prune(iterative_steps=3, decay={"policy": "sp", "steps": 5}), epochs=4, steps_per_epoch=10
    )
    assert schedule.steps[-1] + 5 <= 40


def test_start_after_the_end() -> None:
    with pytest.raises(
        ScheduleError,
        match=r"start_epoch=5 is at step 50, after the last step of the run "
        r"\(finetune.epochs=3 x 10 steps per epoch = 30 steps\)",
    ):
        check_schedule(_prune(start_epoch=5), epochs=3, steps_per_epoch=10)


def test_end_outside_the_run() -> None:
    with pytest.raises(ScheduleError, match="end_epoch=9 is at step 90"):
        check_schedule(_prune(end_epoch=9), epochs=3, steps_per_epoch=10)
    with pytest.raises(ScheduleError, match="end_epoch=1 is at step 10"):
        check_schedule(_prune(start_epoch=2, end_epoch=1), epochs=3, steps_per_epoch=10)


def test_decay_longer_than_the_run() -> None:
    with pytest.raises(
        ScheduleError,
        match=r"decay.steps: a selection at step 1 \+ a decay of N = 100000000 steps \+ a recovery margin of 3 "
        r"steps \(recovery_fraction 0.1 of 30\) = 100000004 > 30 steps in the run; allowed: decay.steps <= 26",
    ):
        check_schedule(_prune(decay={"policy": "sp+sr", "steps": 10**8}), epochs=3, steps_per_epoch=10)
    # oneshot does not decay: the same N does not matter.
    check_schedule(_prune(decay={"policy": "oneshot", "steps": 10**8}), epochs=3, steps_per_epoch=10)
