"""StructureSet.reduce / broadcast / scale_: per-structure helpers agree with a per-slice loop,
on contiguous and channels-last parameters, and keep-at-zero goes through them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from decayprune.models import create
from decayprune.structure import CONSUMER, PRODUCER, StructureSet


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, bias=True),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 5, 3, bias=False),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 4 * 4, 3),
    )
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight)
            nn.init.normal_(m.bias)
    return net


def _loop_reduce(s: StructureSet, fn, role: str | None, grad: bool = False) -> torch.Tensor:
    """The reference: one index_add per slice."""
    out = torch.zeros(s.num_structures)
    for _layer, sl, ids in s.parameter_slices(role):
        t = sl.param.grad if grad else sl.param.detach()
        view = t.movedim(sl.dim, 0).reshape(t.shape[sl.dim], -1)
        out.index_add_(0, ids, fn(view)[sl.positions].float())
    return out


@pytest.mark.parametrize("role", [PRODUCER, CONSUMER, None])
def test_reduce_matches_a_per_slice_loop(role: str | None) -> None:
    net = _net()
    s = StructureSet(net, torch.randn(1, 3, 8, 8))
    net(torch.randn(2, 3, 8, 8)).square().sum().backward()
    sq = lambda v: v.pow(2).sum(1)
    absmax = lambda v: v.abs().amax(1)
    torch.testing.assert_close(s.reduce(role=role), _loop_reduce(s, sq, role), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        s.reduce(role=role, source="grad"), _loop_reduce(s, sq, role, grad=True), rtol=1e-5, atol=1e-7
    )
    torch.testing.assert_close(s.reduce(absmax, role=role), _loop_reduce(s, absmax, role), rtol=0, atol=0)
    with pytest.raises(ValueError, match="source"):
        s.reduce(source="bias")


def test_broadcast_and_scale_reach_every_slice_position() -> None:
    net = _net()
    s = StructureSet(net, torch.randn(1, 3, 8, 8))
    values = torch.arange(1.0, s.num_structures + 1)
    pairs = s.broadcast(values, fill=-1.0)
    assert {id(p) for p, _ in pairs} == {id(sl.param) for _l, sl, _i in s.parameter_slices(PRODUCER)}
    for param, spread in pairs:
        assert spread.dim() == param.dim() and (spread * param).shape == param.shape
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    s.scale_(values)
    after = {n: p.detach() for n, p in net.named_parameters()}
    layer = {lg.name: lg for lg in s.layers}
    rows0 = values[layer["0"].first : layer["0"].first + layer["0"].size]
    rows3 = values[layer["3"].first : layer["3"].first + layer["3"].size]
    torch.testing.assert_close(after["0.weight"], before["0.weight"] * rows0.view(-1, 1, 1, 1))
    torch.testing.assert_close(after["1.bias"], before["1.bias"] * rows0)
    # Conv 3's columns are consumers of layer 0: it is scaled only as layer 3's producer rows.
    torch.testing.assert_close(after["3.weight"], before["3.weight"] * rows3.view(-1, 1, 1, 1))
    assert torch.equal(after["7.weight"], before["7.weight"])  # the classifier is no producer


def test_channels_last_parameters_give_the_same_numbers() -> None:
    model = create("resnet20", num_classes=10)
    s = StructureSet(model, torch.randn(1, 3, 32, 32))
    norms = s.producer_norms()
    counts = s.slice_counts()
    model.to(memory_format=torch.channels_last)
    assert not model.conv1.weight.is_contiguous()
    torch.testing.assert_close(s.producer_norms(), norms, rtol=1e-6, atol=0)  # plans rebuilt for the new layout
    assert torch.equal(s.slice_counts(), counts)
    factors = torch.linspace(0.5, 1.5, s.num_structures)
    s.scale_producers_(factors)
    torch.testing.assert_close(s.producer_norms(), norms * factors, rtol=1e-5, atol=0)
    s.set_pruned([0, 3])
    s.zero_pruned_()
    assert torch.all(s.producer_norms()[[0, 3]] == 0) and torch.all(s.producer_norms()[[1, 2]] > 0)


def test_keep_vector_follows_the_mask() -> None:
    s = StructureSet(_net(), torch.randn(1, 3, 8, 8))
    version = s.mask_version
    keep = s.keep_vector()
    assert keep.shape == (s.num_structures + 1,) and torch.all(keep == 1)
    s.set_pruned([2])
    assert s.mask_version > version
    assert s.keep_vector()[2] == 0 and s.keep_vector().sum() == s.num_structures
    s.set_mask(torch.zeros(s.num_structures, dtype=torch.bool))
    assert torch.all(s.keep_vector() == 1)
