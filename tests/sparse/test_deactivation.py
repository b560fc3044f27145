"""Iterative importance deactivation: rounds by importance, undo on an accuracy drop, SGD and Adam."""

from __future__ import annotations

import pytest
import torch
from sparse_testing import batch, small_convnet
from torch import nn

from decayprune.config import DecaySettings
from decayprune.decay import DecayEngine
from decayprune.sparse import ElementMasks, IterativeDeactivation


def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        acc = float((net(x).argmax(1) == y).float().mean() * 100)
    net.train()
    return acc


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("policy", ["oneshot", "sp"])
def test_rounds_deactivate_the_least_important_and_the_failing_round_is_undone(optimizer: str, policy: str) -> None:
    net = small_convnet()
    units = ElementMasks(net)
    opt = (
        torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        if optimizer == "sgd"
        else torch.optim.Adam(net.parameters(), lr=0.01)
    )
    engine = DecayEngine(units, DecaySettings(policy=policy, steps=2))
    engine.optimizer = opt
    search = IterativeDeactivation(units, engine, fraction=0.3, tolerance=10.0)
    x, y = batch(n=64)
    step = 0

    def retrain(steps: int) -> None:
        nonlocal step
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            engine.after_backward()
            search.accumulate()
            opt.step()
            step += 1
            engine.after_step(step)

    retrain(40)
    search.begin(_accuracy(net, x, y))
    for _ in range(25):
        scores = search.scores()
        active = ~engine.committed()
        before = {"pruned": units.pruned.clone(), "weights": units.per_weight(units.weights)}
        ids = search.deactivate(step)
        if not len(ids):
            break
        assert scores[ids].max() <= scores[active & ~torch.isin(torch.arange(units.num_structures), ids)].min()
        retrain(6)
        if not search.check(_accuracy(net, x, y)):
            # undone: mask and weights as before the failing round
            assert torch.equal(units.pruned, before["pruned"]) and not engine.decaying.any()
            assert torch.equal(units.per_weight(units.weights), before["weights"])
            break
        weights = units.per_weight(units.weights)
        assert torch.all(weights[units.pruned] == 0)
        for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
            if key in opt.state[units.weights[0]]:
                assert torch.all(units.per_weight(opt.state[w][key] for w in units.weights)[units.pruned] == 0)
    assert search.done and search.history[-1]["kept"] is False
    assert all(h["kept"] for h in search.history[:-1])
    kept = [h["sparsity"] for h in search.history if h["kept"]]
    assert units.sparsity() == pytest.approx(kept[-1] if kept else 0.0)  # the last round that held


def test_bad_settings_are_refused() -> None:
    units = ElementMasks(nn.Linear(3, 3))
    engine = DecayEngine(units, DecaySettings())
    with pytest.raises(ValueError, match="fraction"):
        IterativeDeactivation(units, engine, fraction=1.0)
    with pytest.raises(ValueError, match="importance"):
        IterativeDeactivation(units, engine, importance="taylor")
    with pytest.raises(RuntimeError, match="begin"):
        IterativeDeactivation(units, engine).deactivate(0)
