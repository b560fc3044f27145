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


# ---------------------------------------------------------------------------- room for recovery


def test_a_decay_that_cannot_end_before_the_recovery_margin_is_refused_with_the_arithmetic() -> None:
    from decayprune.errors import ScheduleError

    too_long = settings(iterative_steps=1, decay=DecaySettings(steps=95))
    with pytest.raises(
        ScheduleError,
        match=r"step 1 \+ a decay of N = 95 steps \+ a recovery margin of 10 steps "
        r".* = 106 > 100 steps in the run; allowed: decay.steps <= 89",
    ):
        SelectionSchedule.from_settings(too_long, 100, 10)
    late_end = settings(iterative_steps=2, end_epoch=8, decay=DecaySettings(steps=10))
    with pytest.raises(
        ScheduleError,
        match=r"at step 80 \+ a decay of N = 10 steps \+ a recovery margin of 11 "
        r".* = 101 > 100",
    ):
        SelectionSchedule.from_settings(late_end.model_copy(update={"recovery_fraction": 0.11}), 100, 10)
    # The same with the margin it fits in is accepted, and its last selection is the last start.
    s = SelectionSchedule.from_settings(late_end, 100, 10)
    assert s.steps == (1, 80) and s.last_start == 80 and s.decay_steps == 10


def test_unset_decay_steps_are_fitted_to_a_short_run_and_every_selection_has_room() -> None:
    s = SelectionSchedule.from_settings(settings(iterative_steps=4), 60, 10)
    # The default margin is half the run (30 steps): N is half of what is left after the first selection.
    assert s.decay_steps == (60 - 30 - 1) // 2 == 14
    assert all(k + s.decay_steps + 30 <= 60 for k in s.steps) and s.steps[-1] <= s.last_start
    assert not s.can_start(s.last_start + 1) and s.can_start(s.last_start)
    # Left at its default, N stays 100 when it fits.
    assert SelectionSchedule.from_settings(settings(iterative_steps=2), 1000, 10).decay_steps == 100


def test_oneshot_keeps_the_margin_too() -> None:
    s = SelectionSchedule.from_settings(settings(iterative_steps=2, decay=DecaySettings(policy="oneshot")), 100, 10)
    assert s.last_start == 50 and s.decay_steps == 0 and s.steps == (1, 50)
    given = settings(iterative_steps=2, recovery_fraction=0.1, decay=DecaySettings(policy="oneshot"))
    assert SelectionSchedule.from_settings(given, 100, 10).last_start == 90


def test_the_default_recovery_is_half_the_run_unless_the_user_sets_the_schedule() -> None:
    assert settings().recovery_share() == 0.5
    assert settings(end_epoch=2).recovery_share() == 0.1
    assert settings(decay=DecaySettings(steps=20)).recovery_share() == 0.1
    assert settings(end_epoch=2, recovery_fraction=0.3).recovery_share() == 0.3
    # Defaults: one selection at step 1, N fitted to half the first half, every backfill ends by the middle.
    s = SelectionSchedule.from_settings(settings(), 188, 94)
    assert s.steps == (1,) and s.decay_steps == (188 - 94 - 1) // 2 == 46
    assert s.last_start + s.decay_steps == 94


def test_a_method_without_iterative_steps_gets_its_own_default() -> None:
    assert settings().selection_points() == 1
    assert PruneSettings(method="gate_decorator", target_macs_fraction=0.5).selection_points() == 5
    assert PruneSettings(method="magnitude_elements", target_sparsity=0.5).selection_points() == 5
    assert PruneSettings(method="gate_decorator", target_macs_fraction=0.5, iterative_steps=3).selection_points() == 3
    # Methods that regularise or optimise between the points keep 5 of them.
    for method in ("otov2", "slimming"):
        assert PruneSettings(method=method, target_macs_fraction=0.5).selection_points() == 5
    sparse = {"sparse_lambda": 1e-4}
    assert PruneSettings(method="depgraph", target_macs_fraction=0.5, method_options=sparse).selection_points() == 5
    own = {**sparse, "sparse_phase": "own"}  # its own phase regularises before the run: one selection again
    assert PruneSettings(method="depgraph", target_macs_fraction=0.5, method_options=own).selection_points() == 1


def test_a_oneshot_selection_after_the_margin_is_refused() -> None:
    from decayprune.errors import ScheduleError

    late = settings(iterative_steps=2, end_epoch=9.5, decay=DecaySettings(policy="oneshot"))
    with pytest.raises(ScheduleError, match=r"end_epoch: the last selection at step 95 .* = 105 > 100 .* step <= 90"):
        SelectionSchedule.from_settings(late, 100, 10)
