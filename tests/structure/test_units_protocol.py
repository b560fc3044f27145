"""The decay engine runs on any PrunableUnits: here the element masks of decayprune.sparse.

Each unit is one weight element (unstructured pruning's unit). The engine is the one the Pruner
uses, unchanged: oneshot zeroes at once, sp decays each element's magnitude to exactly zero in N
steps, sp+sr releases elements whose gradients push back, and every held element stays at exactly
zero in its weight, its gradient and the optimizer's momentum.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from decayprune.config import DecaySettings
from decayprune.decay import DecayEngine
from decayprune.sparse import ElementMasks
from decayprune.structure import PrunableUnits, StructureSet

QUIET = torch.tensor([8, 9, 15, 22])
"""Elements whose optimum is 0: the loss pulls them the way the decay goes, so nothing resists."""


def _regression(seed: int = 0) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    """A linear model near its optimum; row 0's targets are large (its elements resist a decay)."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(6, 4, bias=False)
    target = torch.randn(4, 6, generator=g) * 0.3
    target[0] *= 20
    start = target + 0.01 * torch.randn(4, 6, generator=g)
    target.view(-1)[QUIET] = 0.0
    start.view(-1)[QUIET] = 0.5
    with torch.no_grad():
        model.weight.copy_(start)
    x = torch.randn(256, 6, generator=g)
    return model, x, x @ target.T


def _run(policy: str, ids: torch.Tensor, steps: int, n: int = 8, **decay) -> tuple[ElementMasks, list, list]:
    model, x, y = _regression()
    units = ElementMasks(model)
    assert isinstance(units, PrunableUnits)
    events: list[dict] = []
    engine = DecayEngine(units, DecaySettings(policy=policy, steps=n, **decay), sink=events.append)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    engine.optimizer = opt
    engine.start(ids, step=0)
    history = []
    for k in range(1, steps + 1):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        engine.after_backward()
        held = units.pruned.clone()
        grad = model.weight.grad.detach().flatten().clone()
        opt.step()
        engine.after_step(step=k)
        momentum = opt.state[model.weight]["momentum_buffer"].flatten().clone()
        history.append((held, grad, model.weight.detach().flatten().clone(), momentum, units.pruned.clone()))
    return units, events, history


def _assert_held_at_zero(history: list) -> None:
    for held_before, grad, _w, _m, _held_after in history:
        assert torch.all(grad[held_before] == 0)  # gradients of held elements, after after_backward
    for _h, _g, weight, momentum, held in history:
        assert torch.all(weight[held] == 0) and torch.all(momentum[held] == 0)


def test_the_channel_groups_implement_the_protocol() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert isinstance(StructureSet(net, torch.zeros(1, 3)), PrunableUnits)


def test_oneshot_zeroes_elements_at_once_and_holds_them() -> None:
    ids = torch.tensor([1, 7, 13, 20])
    units, events, history = _run("oneshot", ids, steps=5)
    assert units.pruned.nonzero().flatten().tolist() == ids.tolist()
    assert all(torch.all(w[ids] == 0) for _h, _g, w, _m, _p in history)
    assert all(torch.all(m[ids] == 0) for _h, _g, _w, m, _p in history)
    _assert_held_at_zero(history)
    assert not torch.all(history[-1][2] == 0)  # the others train


@pytest.mark.parametrize("n", [1, 5, 8])
def test_sp_decays_each_element_to_exactly_zero_in_n_steps(n: int) -> None:
    ids = torch.tensor([1, 8, 9, 15, 22])
    model, _x, _y = _regression()
    l_init = model.weight.detach().flatten()[ids].abs()
    units, events, history = _run("sp", ids, steps=n + 4, n=n)
    for k, (_h, _g, weight, _m, pruned) in enumerate(history, start=1):
        magnitude = weight[ids].abs()
        if k < n:
            torch.testing.assert_close(magnitude, l_init * (n - k) / n, rtol=1e-5, atol=0)
            assert not pruned[ids].any()
        else:
            assert torch.all(weight[ids] == 0) and bool(pruned[ids].all())  # exactly zero at step N
    _assert_held_at_zero(history)
    assert sorted(e["structure"] for e in events if e["kind"] == "complete") == ids.tolist()


def test_sp_sr_releases_the_elements_whose_gradients_resist() -> None:
    resisting = torch.arange(0, 6)  # row 0: its targets are 20x larger, the loss pulls them back
    quiet = QUIET
    ids = torch.cat([resisting, quiet])
    units, events, history = _run("sp+sr", ids, steps=30, n=20, window=3, cooldown=5, t_len=1.5)
    released = {e["structure"] for e in events if e["kind"] == "release"}
    assert released and released <= set(resisting.tolist())
    final = history[-1][2]
    assert torch.all(final[quiet] == 0) and bool(units.pruned[quiet].all())  # the quiet ones completed
    assert not units.pruned[list(released)].any() and torch.all(final[list(released)] != 0)  # released: training
    _assert_held_at_zero(history)
