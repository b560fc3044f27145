"""PruneContext's verbs: committed, available, macs_budget, and start under the recovery guard."""

from __future__ import annotations

import warnings

import pytest
import torch

from decayprune import DecaySettings, Pruner, PruneSettings, create_model


def _pruner(policy: str = "sp") -> Pruner:
    settings = PruneSettings(
        method="l1", target_macs_fraction=0.5, iterative_steps=2, decay=DecaySettings(policy=policy, steps=4)
    )
    return Pruner(create_model("small_cnn", in_channels=1), torch.zeros(1, 1, 8, 8), settings, total_steps=40)


def test_start_commits_and_the_verbs_see_it() -> None:
    ctx = _pruner().context
    assert not ctx.committed().any() and ctx.available().all()
    assert ctx.macs_budget(0) == ctx.base_macs and ctx.macs_budget(10**6) == pytest.approx(ctx.final_macs)
    assert ctx.start(torch.tensor([0, 3])) is True
    assert ctx.committed().nonzero().flatten().tolist() == [0, 3]
    assert not ctx.available()[[0, 3]].any() and ctx.available()[1]
    assert ctx.committed_macs() < ctx.base_macs
    assert ctx.decay_settings.steps == 4 and ctx.start(torch.tensor([], dtype=torch.long)) is False


def test_start_after_the_last_start_is_refused_and_warned_once() -> None:
    ctx = _pruner().context
    last = ctx.schedule.last_start
    assert last is not None
    ctx.step = last + 1
    with pytest.warns(UserWarning, match=r"selected 1 structures at step .* not started"):
        assert ctx.start(torch.tensor([2]), who="Test") is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ctx.start(torch.tensor([2])) is False  # refused again, without a second warning
    assert not ctx.committed().any()
    ctx.step = last
    assert ctx.start(torch.tensor([2])) is True and bool(ctx.committed()[2])
