"""The radial self-rectifying criterion: invariant to the learning rate, windowed, and documented values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from decayprune.decay import DecayEngine, DecaySettings
from decayprune.structure import StructureSet

PUSHED, QUIET = 0, 1


def _release_step(
    settings: DecaySettings, make_opt, steps: int = 12, strength: float = 1.0, scale: float = 1.0
) -> tuple[int | None, list[dict]]:
    """Decay rows 0 and 1 of the first layer; the loss rewards row 0's norm (its gradient is radial)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    with torch.no_grad():
        net[0].weight.mul_(scale)
    s = StructureSet(net, torch.randn(1, 4))
    opt = make_opt(net.parameters())
    events: list[dict] = []
    stats: list[dict] = []
    engine = DecayEngine(s, settings, sink=events.append, stats_sink=stats.append)
    engine.optimizer = opt
    engine.start(torch.tensor([PUSHED, QUIET]), step=0)
    x = torch.randn(16, 4)
    released_at = None
    for k in range(1, steps + 1):
        opt.zero_grad()
        loss = 1e-3 * net(x).square().mean() - strength * scale * net[0].weight[PUSHED].norm()
        loss.backward()
        engine.after_backward()
        opt.step()
        if PUSHED in engine.after_step(k) and released_at is None:
            released_at = k
    return released_at, stats


RADIAL = DecaySettings(policy="sp+sr", steps=20, t_rate=0.5, t_len=2.0, window=3, sr_criterion="radial")
PAPER = DecaySettings(policy="sp+sr", steps=20, t_rate=1.0, t_len=2.0, window=3, sr_criterion="pushback")


def _sgd(lr: float):
    return lambda p: torch.optim.SGD(p, lr=lr)


def _adam(lr: float):
    return lambda p: torch.optim.Adam(p, lr=lr)


@pytest.mark.parametrize("make", [_sgd, _adam], ids=["sgd", "adam"])
def test_radial_release_step_is_the_same_at_lr_and_10x_lr(make) -> None:
    steps = {lr: _release_step(RADIAL, make(lr))[0] for lr in (0.002, 0.02)}
    assert steps == {0.002: RADIAL.window, 0.02: RADIAL.window}


def test_radial_release_step_does_not_depend_on_the_weight_scale() -> None:
    # Scaling the row by 10 (and its reward, so the gradient's direction is the same) changes nothing.
    assert _release_step(RADIAL, _sgd(0.01), scale=1.0)[0] == _release_step(RADIAL, _sgd(0.01), scale=10.0)[0] == 3


def test_paper_criterion_depends_on_the_learning_rate() -> None:
    # The contrast the radial criterion removes: push-back in decay quanta is lr * gradient / quantum.
    slow, _ = _release_step(PAPER, _sgd(0.005))
    fast, _ = _release_step(PAPER, _sgd(0.05))
    assert slow is None and fast == PAPER.window


def test_radial_window_needs_w_decay_steps() -> None:
    for window in (1, 5):
        settings = RADIAL.model_copy(update={"window": window})
        assert _release_step(settings, _sgd(0.01))[0] == window


def test_a_structure_the_loss_shrinks_is_not_released() -> None:
    released, stats = _release_step(RADIAL, _sgd(0.01), strength=-1.0)
    assert released is None
    assert stats and all(r["c_rate_p05"] < -0.9 for r in stats)  # row 0's update points inward: cosine ~ -1


def test_stats_records_hold_the_compared_values_and_thresholds() -> None:
    _released, stats = _release_step(RADIAL, _sgd(0.01), steps=2)
    assert [r["step"] for r in stats] == [1, 2]
    first = stats[0]
    assert first["n"] == 2 and first["t_rate"] == 0.5 and first["t_len"] == 2.0 and first["criterion"] == "radial"
    # Row 0's update is almost purely radial (cosine ~ 1); it is the max over the two decaying rows.
    assert first["c_rate_max"] == pytest.approx(1.0, abs=0.02)
    assert first["c_rate_p05"] <= first["c_rate_p50"] <= first["c_rate_p95"] <= first["c_rate_max"]
    assert first["c_len_max"] > 2.0


def test_no_release_after_release_until() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    s = StructureSet(net, torch.randn(1, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    engine = DecayEngine(s, RADIAL)
    engine.optimizer = opt
    engine.release_until = 2  # the window (3) is full only at step 3
    engine.start(torch.tensor([PUSHED]), step=0)
    for k in range(1, 8):
        opt.zero_grad()
        (-net[0].weight[PUSHED].norm()).backward()
        engine.after_backward()
        opt.step()
        assert engine.after_step(k) == []
    assert engine.releases == 0


def test_a_window_longer_than_the_decay_is_capped_at_n() -> None:
    # W = 50 > N = 20: without the cap the structure could never be released.
    settings = RADIAL.model_copy(update={"window": 50})
    assert _release_step(settings, _sgd(0.01), steps=25)[0] == RADIAL.steps
