"""FlatPlan's cached per-parameter views: reused across steps, rebuilt when a parameter's storage,
shape or strides change, and sums of squares stay exact (missing gradients, other gradient layouts,
a compacted model), on both the fused path and the CPU's row path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from decayprune.structure import PRODUCER, StructureSet
from decayprune.structure.compaction import compact
from decayprune.structure.kernels import FlatPlan, SliceEntry


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 5, 3, bias=False),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 4 * 4, 3),
    )


def _reference(s: StructureSet, source: str) -> torch.Tensor:
    """Per-structure sums of squares with one index_add per slice (no FlatPlan)."""
    out = torch.zeros(s.num_structures)
    for _layer, sl, ids in s.parameter_slices(PRODUCER):
        t = sl.param.grad if source == "grad" else sl.param.detach()
        if t is None:
            continue
        view = t.movedim(sl.dim, 0).reshape(t.shape[sl.dim], -1)
        out.index_add_(0, ids, view.square().sum(1)[sl.positions].float())
    return out


def _backward(net: nn.Module) -> None:
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(torch.randn(4, 3, 8, 8)), torch.randint(0, 3, (4,))).backward()


@pytest.fixture(params=[False, True], ids=["fused", "cpu_rows"])
def row_ops(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(FlatPlan, "cpu_row_ops", request.param)
    return request.param


def test_grad_sums_of_squares_reuse_the_plan_across_steps(row_ops: bool) -> None:
    net = _net()
    s = StructureSet(net, torch.randn(1, 3, 8, 8))
    plans = s.flat_plans(PRODUCER)
    for _ in range(3):  # new gradient tensors each step (set_to_none), same plans and views
        _backward(net)
        assert s.flat_plans(PRODUCER) is plans
        torch.testing.assert_close(s.reduce(source="grad"), _reference(s, "grad"))


def test_missing_and_differently_laid_out_gradients(row_ops: bool) -> None:
    net = _net()
    s = StructureSet(net, torch.randn(1, 3, 8, 8))
    _backward(net)
    net[4].weight.grad = None  # a missing gradient counts as zero
    conv = net[3].weight
    conv.grad = conv.grad.contiguous(memory_format=torch.channels_last)  # strides unlike the parameter's
    assert conv.grad.stride() != conv.stride()
    torch.testing.assert_close(s.reduce(source="grad"), _reference(s, "grad"))
    _backward(net)  # the gradient comes back: its structures count again
    torch.testing.assert_close(s.reduce(source="grad"), _reference(s, "grad"))


def test_replaced_storage_rebuilds_the_plan(row_ops: bool) -> None:
    net = _net()
    s = StructureSet(net, torch.randn(1, 3, 8, 8))
    _backward(net)
    s.reduce(source="grad")  # builds and fills the cached views
    old = s.flat_plans(PRODUCER)
    with torch.no_grad():
        net[0].weight.data = torch.randn_like(net[0].weight)  # new storage, same shape
    assert not all(p.matches_layout() for p in old)
    assert s.flat_plans(PRODUCER) is not old
    torch.testing.assert_close(s.producer_norms().square(), _reference(s, "weight"))
    _backward(net)
    torch.testing.assert_close(s.reduce(source="grad"), _reference(s, "grad"))
    net.to(memory_format=torch.channels_last)  # new strides
    _backward(net)
    torch.testing.assert_close(s.reduce(source="grad"), _reference(s, "grad"))
    torch.testing.assert_close(s.producer_norms().square(), _reference(s, "weight"))


def test_a_shape_change_on_the_same_storage_is_noticed() -> None:
    w = nn.Parameter(torch.ones(4, 3))
    plan = FlatPlan([SliceEntry(w, 0, torch.arange(4))], 4, torch.device("cpu"))
    assert plan.matches_layout()
    w.data = w.data[:2]  # same data pointer and strides, fewer rows
    assert not plan.matches_layout()


def test_compacted_model_gets_fresh_exact_plans(row_ops: bool) -> None:
    net = _net()
    s = StructureSet(net, torch.randn(1, 3, 8, 8))
    _backward(net)
    s.reduce(source="grad")
    first = next(layer.first for layer in s.layers if layer.name == "0")
    s.set_pruned([first, first + 2])
    s.zero_pruned_()
    compact(s)
    fresh = StructureSet(net, torch.randn(1, 3, 8, 8))
    _backward(net)
    torch.testing.assert_close(fresh.reduce(source="grad"), _reference(fresh, "grad"))
    torch.testing.assert_close(fresh.producer_norms().square(), _reference(fresh, "weight"))
