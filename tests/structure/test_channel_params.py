"""Channel multipliers (gates): part of the structures, folded exactly, compaction unchanged."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from structure_testing import randomize_bn

from decayprune.models import create
from decayprune.structure import PRODUCER, StructureSet, compact
from decayprune.structure.channel_params import add_channel_multiplier, remove_channel_multiplier

X = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def resnet() -> tuple[nn.Module, StructureSet]:
    torch.manual_seed(0)
    model = create("resnet20", num_classes=10, width=0.25).eval()
    randomize_bn(model)
    return model, StructureSet(model, X[:1])


def test_a_multiplier_is_a_producer_slice_of_the_channels_it_scales() -> None:
    model, s = resnet()
    m = add_channel_multiplier(s, "bn1", torch.linspace(0.5, 1.5, model.bn1.num_features))
    names = {sl.name for _l, sl, _i in s.parameter_slices(PRODUCER)}
    assert "bn1.channel_gate" in names and "bn1.channel_gate" in dict(model.named_parameters())
    target = int(m.ids[0])
    before = s.producer_norms()
    s.scale_producers_(torch.where(torch.arange(s.num_structures) == target, 0.0, 1.0))
    after = s.producer_norms()
    assert float(m.param.detach()[m.slice.positions[0]]) == 0.0 and after[target] == 0
    others = torch.arange(s.num_structures) != target
    torch.testing.assert_close(after[others], before[others])


def test_folding_leaves_the_output_unchanged_and_removes_the_parameter() -> None:
    model, s = resnet()
    gates = [
        add_channel_multiplier(s, name, 0.5 + torch.rand(model.get_submodule(name).num_features))
        for name in ("bn1", "layer1.0.bn1", "layer2.0.bn2")
    ]
    gated = model(X)
    for gate in gates:
        remove_channel_multiplier(s, gate)
    torch.testing.assert_close(model(X), gated, rtol=1e-5, atol=1e-6)
    assert not any("channel_gate" in n for n, _ in model.named_parameters())
    assert all(not sl.name.endswith("channel_gate") for _l, sl, _i in s.parameter_slices())


def test_zeroed_gates_compact_exactly_on_a_residual_model() -> None:
    model, s = resnet()
    gate = add_channel_multiplier(s, "layer1.0.bn1", torch.ones(model.layer1[0].bn1.num_features))
    s.set_pruned(gate.ids[:2])
    s.zero_pruned_()
    masked = model(X)
    remove_channel_multiplier(s, gate)
    compact(s)
    out = model(X)
    assert float((out - masked).norm() / masked.norm()) < 1e-5


def test_bad_targets_are_refused() -> None:
    model, s = resnet()
    with pytest.raises(ValueError, match="does not produce the channels"):
        add_channel_multiplier(s, "fc")
    with pytest.raises(ValueError, match="must have shape"):
        add_channel_multiplier(s, "bn1", torch.ones(3))
    add_channel_multiplier(s, "bn1")
    with pytest.raises(ValueError, match="already has an attribute"):
        add_channel_multiplier(s, "bn1")
