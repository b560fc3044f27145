"""SCL: identity straight-through gradients, per-feature normalisation, the connection penalty, commit to DPM."""

from __future__ import annotations

import pytest
import torch
from sparse_testing import batch, small_convnet
from torch import nn

from decayprune.config import DecaySettings
from decayprune.decay import DecayEngine
from decayprune.sparse import SCL, ElementMasks


def test_score_gradients_are_the_normalised_ste_gradient_plus_the_penalty() -> None:
    torch.manual_seed(0)
    net = nn.Linear(5, 3, bias=False)
    w = net.weight.detach().clone()
    scl = SCL(ElementMasks(net), penalty=0.25, init=1.0)
    with torch.no_grad():
        scl.scores[0][0, :2] = -1.0  # two connections off: they compute as 0 but still get a gradient
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    torch.nn.functional.mse_loss(net(x), y).backward()
    scl.after_backward()
    effective = (w * (scl.scores[0].detach() > 0)).requires_grad_()
    torch.nn.functional.mse_loss(x @ effective.T, y).backward()
    raw = effective.grad * w  # identity STE: dL/dm = dL/d(w*step(m)) * w
    rms = raw.square().mean(1, keepdim=True).sqrt()
    torch.testing.assert_close(scl.scores[0].grad, raw / rms + 0.25)
    assert torch.all(scl.scores[0].grad[0, :2] != 0.25)  # the off connections see the loss too
    assert torch.equal(net(x), x @ (w * (scl.scores[0].detach() > 0)).T)


def test_the_penalty_switches_connections_off_and_commit_hands_them_to_dpm() -> None:
    net = small_convnet()
    units = ElementMasks(net)
    scl = SCL(units, penalty=0.5, init=0.05)
    opt = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)  # the scores are the layers' parameters too
    x, y = batch()
    start = scl.active()
    for _ in range(15):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        scl.after_backward()
        opt.step()
    assert scl.active() < start
    off = scl.commit()
    assert len(off) == start - scl.active() and not hasattr(net[0], "parametrizations")
    opt = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    engine = DecayEngine(units, DecaySettings(policy="sp", steps=3))
    engine.optimizer = opt
    engine.start(off, step=0)
    for k in range(1, 4):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        engine.after_backward()
        opt.step()
        engine.after_step(k)
    assert bool(units.pruned[off].all()) and torch.all(units.per_weight(units.weights)[off] == 0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="penalty"):
        SCL(ElementMasks(nn.Linear(2, 2)), penalty=-1.0)
    with pytest.raises(ValueError, match="init"):
        SCL(ElementMasks(nn.Linear(2, 2)), init=0.0)
