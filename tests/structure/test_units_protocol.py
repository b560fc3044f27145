"""The decay engine runs on any PrunableUnits: here an element-mask implementation written in the test.

Each unit is one weight element (unstructured pruning's unit). The engine is the one the Pruner
uses, unchanged: oneshot zeroes at once, sp decays each element's magnitude to exactly zero in N
steps, sp+sr releases elements whose gradients push back, and every held element stays at exactly
zero in its weight, its gradient and the optimizer's momentum.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest
import torch
from torch import nn

from decayprune.config import DecaySettings
from decayprune.decay import DecayEngine
from decayprune.structure import PRODUCER, PrunableUnits, StructureSet
from decayprune.structure.kernels import FlatPlan, SliceEntry, build_flat_plans, hold_at_zero_, pad


class ElementMasks:
    """Every element of ``params`` is a unit; unit ids run over the parameters in order."""

    def __init__(self, params: Sequence[nn.Parameter], names: Sequence[str]) -> None:
        self.params = list(params)
        self.names = list(names)
        sizes = [p.numel() for p in self.params]
        self.num_structures = sum(sizes)
        starts = torch.tensor([0] + sizes).cumsum(0)[:-1].tolist()
        self.ids = [torch.arange(s, s + p.numel()).view(p.shape) for s, p in zip(starts, self.params)]
        self.layer_of = torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(sizes)])
        self.pruned = torch.zeros(self.num_structures, dtype=torch.bool)
        self._version = 0
        self._plans: dict[torch.device, list[FlatPlan]] = {}

    @property
    def num_groups(self) -> int:
        return len(self.params)

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    @property
    def mask_version(self) -> int:
        return self._version

    def group_name(self, unit: int) -> str:
        return self.names[int(self.layer_of[unit])]

    def set_pruned(self, ids: torch.Tensor | Sequence[int], value: bool = True) -> None:
        self.pruned[torch.as_tensor(ids, dtype=torch.long)] = value
        self._version += 1

    def set_mask(self, pruned: torch.Tensor) -> None:
        self.pruned.copy_(pruned.bool())
        self._version += 1

    def keep_vector(self) -> torch.Tensor:
        return pad((~self.pruned).float(), 1.0).to(self.device)

    def flat_plans(self, role: str | None = PRODUCER) -> list[FlatPlan]:
        if self.device not in self._plans:
            entries = [SliceEntry(p, None, ids) for p, ids in zip(self.params, self.ids)]  # element entries
            self._plans[self.device] = build_flat_plans(entries, self.num_structures, self.device)
        return self._plans[self.device]

    def _sumsq(self, source: str) -> torch.Tensor:
        out = torch.zeros(self.num_structures + 1, device=self.device)
        for plan in self.flat_plans():
            plan.add_sumsq_(out, source)
        return out[: self.num_structures]

    def producer_norms(self, layers: Iterable[int] | None = None) -> torch.Tensor:
        return self._sumsq("weight").sqrt()

    def grad_norms(self, layers: Iterable[int] | None = None) -> torch.Tensor:
        return self._sumsq("grad").sqrt()

    @torch.no_grad()
    def scale_(self, factors: torch.Tensor, *, role: str | None = PRODUCER) -> None:
        padded = pad(factors.to(self.device, torch.float32), 1.0)
        for plan in self.flat_plans():
            plan.mul_(plan.params, plan.gather(padded))

    def zero_pruned_(self, optimizer: torch.optim.Optimizer | None = None, grads: bool = True) -> None:
        keep = self.keep_vector()
        for plan in self.flat_plans():
            hold_at_zero_(plan, factors=lambda p=plan: p.gather(keep, "keep"), grads=grads, optimizer=optimizer)

    def macs(self, pruned: torch.Tensor | None = None) -> float:
        return float((~(self.pruned if pruned is None else pruned)).sum())  # one MAC per kept weight

    def params(self, pruned: torch.Tensor | None = None) -> float:  # type: ignore[override]
        return self.macs(pruned)


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
    units = ElementMasks([model.weight], ["fc"])
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
