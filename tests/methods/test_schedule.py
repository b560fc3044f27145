"""SelectionSchedule: a pure function of the settings and step counts."""

from __future__ import annotations

import pytest

from decayprune.config import DecaySettings, PruneSettings
from decayprune.methods import SelectionSchedule


def settings(**kw) -> PruneSettings:
    return PruneSettings(target_macs_fraction=0.5, **kw)


def test_default_end_leaves_the_decay_and_a_quarter_for_recovery() -> None:
    s = SelectionSchedule.from_settings(settings(iterative_steps=3, decay=DecaySettings(steps=10)), 100, 10)
    assert s.steps == (1, 33, 65) and s.steps[-1] + 10 + 100 // 4 <= 100


def test_epochs_are_read_in_steps_per_epoch_and_one_selection_is_the_start() -> None:
    s = SelectionSchedule.from_settings(settings(iterative_steps=1, start_epoch=2.5), 100, 10)
    assert s.steps == (25,)
    s = SelectionSchedule.from_settings(settings(iterative_steps=2, start_epoch=1, end_epoch=3), 100, 10)
    assert s.steps == (10, 30)


def test_budget_tightens_linearly_over_the_selections() -> None:
    s = SelectionSchedule((10, 20, 30, 40))
    budgets = [s.macs_budget(step, 100.0, 20.0) for step in (0, 10, 25, 40, 99)]
    assert budgets == [100.0, 80.0, 60.0, 20.0, 20.0]
    assert s.in_pruning_phase(40) and not s.in_pruning_phase(41)


def test_impossible_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="ends .* before it starts"):
        SelectionSchedule.from_settings(settings(start_epoch=5, end_epoch=2), 100, 10)
    with pytest.raises(ValueError, match="increasing"):
        SelectionSchedule((5, 3))
    with pytest.raises(ValueError, match="total_steps"):
        SelectionSchedule.from_settings(settings(), 0, 10)
