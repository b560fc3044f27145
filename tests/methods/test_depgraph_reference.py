"""DepGraph against Torch-Pruning, the reference code: the regulariser's gradient and the importance."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch_pruning as tp

from decayprune.criteria import create_criterion
from decayprune.criteria.magnitude import group_magnitude
from decayprune.criteria.reduce import layer_normalize
from decayprune.methods import create_method
from decayprune.methods.depgraph_reg import depgraph_regularize
from decayprune.models import create
from decayprune.structure import StructureSet


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = create(name, num_classes=10)
    with torch.no_grad():  # trained-looking BN scales and shifts (fresh ones are all 1 and 0)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.2, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


def _zero_grads(model: nn.Module) -> None:
    for p in model.parameters():
        p.grad = torch.zeros_like(p)


def test_regulariser_gradient_equals_torch_pruning_group_norm_pruner() -> None:
    model = _model("resnet20")
    example = torch.randn(1, 3, 32, 32)
    reg = 5e-4
    pruner = tp.pruner.GroupNormPruner(
        model,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        reg=reg,
        ignored_layers=[model.classifier],
    )
    _zero_grads(model)
    pruner.regularize(model)  # alpha=2**4, bias=False: what DepGraph's reproduce script calls
    theirs = {n: p.grad.clone() for n, p in model.named_parameters()}
    structures = StructureSet(model, example)
    assert len(structures.layers) == len(pruner._groups)
    _zero_grads(model)
    depgraph_regularize(structures, reg, alpha=16.0)
    touched = 0
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, theirs[name], rtol=0, atol=1e-6, msg=name)
        touched += int(bool(theirs[name].abs().sum() > 0))
    assert touched > 40  # convs, BN weights and the classifier's input columns all get a term
    assert theirs["bn1.bias"].abs().sum() == 0  # BN beta is not regularised (bias=False)


def test_group_norm_scores_equal_torch_pruning_group_magnitude_importance_on_resnet56() -> None:
    model = _model("resnet56")
    structures = StructureSet(model, torch.randn(1, 3, 32, 32))
    ours = create_criterion("group_norm").score(SimpleNamespace(structures=structures))  # its defaults
    torch.testing.assert_close(
        ours, layer_normalize(group_magnitude(structures), structures.layer_of, len(structures.layers))
    )
    importance = tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean", normalizer="mean")
    theirs = torch.empty_like(ours)
    for layer in structures.layers:
        assert layer.channel_groups == 1 and layer.block == 1
        group = structures.graph.get_pruning_group(
            layer.root, tp.prune_conv_out_channels, idxs=list(range(layer.num_channels))
        )
        theirs[layer.first + layer.local_of(torch.arange(layer.num_channels))] = importance(group).float()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    assert torch.equal(torch.argsort(ours), torch.argsort(theirs))  # the same global ranking


@pytest.mark.parametrize("regularizer", ["depgraph", "group_lasso"])
def test_committed_structures_get_no_regulariser(regularizer: str) -> None:
    model = _model("resnet20")
    structures = StructureSet(model, torch.randn(1, 3, 32, 32))
    method = create_method("depgraph", sparse_lambda=1e-3, regularizer=regularizer)
    live = torch.ones(structures.num_structures, dtype=torch.bool)
    live[structures.layers[0].first] = False
    _zero_grads(model)
    method.regularize(structures, live=live)
    layer = structures.layers[0]
    bn = next(sl for sl in layer.slices if sl.param.dim() == 1 and sl.name.endswith("weight"))
    at = bn.positions[layer.local_of(bn.positions) == 0]  # the BN scale of the held structure ...
    grad = bn.param.grad
    assert grad[at].abs().sum() == 0 and grad.abs().sum() > 0  # ... gets nothing, the others do
