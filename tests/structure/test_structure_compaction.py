"""Compaction: the smaller model computes the masked model's function, and training continues
exactly as it would have on the masked model (optimizer state remapped)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from structure_testing import random_mask, randomize_bn

from decayprune.models import create
from decayprune.structure import StructureSet, compact


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


CASES = [
    pytest.param("resnet56", {}, (2, 3, 32, 32), id="resnet56"),
    pytest.param("vgg16", {}, (2, 3, 32, 32), id="vgg16"),
    pytest.param("concat_cnn", {}, (2, 3, 16, 16), id="concat_cnn"),
    pytest.param("mobilenetv2_cifar", {}, (2, 3, 32, 32), id="mobilenetv2_cifar"),
    pytest.param("mlp", {}, (2, 3, 8, 8), id="mlp"),
    pytest.param("resnet20", {}, (2, 3, 32, 32), id="resnet20"),
]


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES)
def test_compaction_preserves_outputs(name: str, kwargs: dict, shape: tuple) -> None:
    torch.manual_seed(0)
    model = create(name, num_classes=10, **kwargs)
    randomize_bn(model)
    model.eval()
    x = torch.randn(*shape)
    s = StructureSet(model, x[:1])
    mask = random_mask(s, 0.4, seed=1)
    s.set_mask(mask)
    s.zero_pruned_()
    with torch.no_grad():
        ref = model(x)
    params_before = sum(p.numel() for p in model.parameters())
    report = compact(s)
    with torch.no_grad():
        out = model(x)
    assert s.stale
    assert report.removed_structures == int(mask.sum()) > 0
    assert report.params_before == params_before
    assert report.params_after == sum(p.numel() for p in model.parameters()) < params_before
    assert rel_err(out, ref) < 1e-5
    # Every root layer kept exactly its unpruned channels.
    for layer in s.layers:
        removed = int(mask[layer.first : layer.first + layer.size].sum()) * layer.channel_groups
        root = layer.root
        out = root.out_channels if isinstance(root, nn.Conv2d) else root.out_features
        assert out == layer.num_channels - removed, layer.name


def test_compaction_of_empty_mask_changes_nothing() -> None:
    torch.manual_seed(0)
    model = create("small_cnn", in_channels=1).eval()
    x = torch.randn(2, 1, 8, 8)
    s = StructureSet(model, x[:1])
    shapes = {n: p.shape for n, p in model.named_parameters()}
    with torch.no_grad():
        ref = model(x)
    report = compact(s)
    assert report.removed_structures == 0 and report.params_before == report.params_after
    assert {n: p.shape for n, p in model.named_parameters()} == shapes
    with torch.no_grad():
        assert torch.equal(model(x), ref)


# ---------------------------------------------------------------------------- optimizer state


def _sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)


def _adamw(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-2, weight_decay=1e-2)


def _masked_step(
    model: nn.Module, opt: torch.optim.Optimizer, s: StructureSet, x: torch.Tensor, y: torch.Tensor
) -> None:
    """One training step of the masked model with keep-at-zero."""
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    s.zero_grads_of_pruned_()
    opt.step()
    s.zero_pruned_(opt)


def _plain_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


def _kept(tensor: torch.Tensor, dead_by_dim: dict[int, torch.Tensor]) -> torch.Tensor:
    out = tensor
    for dim, dead in dead_by_dim.items():
        keep = torch.ones(tensor.shape[dim], dtype=torch.bool)
        keep[dead] = False
        out = out.index_select(dim, keep.nonzero().flatten())
    return out


def _dead_positions(s: StructureSet) -> dict[str, dict[int, torch.Tensor]]:
    """Parameter name -> dim -> positions removed by the mask (from every coupled slice)."""
    dead: dict[str, dict[int, torch.Tensor]] = {}
    for _layer, sl, ids in s.parameter_slices():
        pos = sl.positions[s.pruned[ids]]
        if pos.numel():
            per_dim = dead.setdefault(sl.name, {})
            per_dim[sl.dim] = torch.cat([per_dim.get(sl.dim, torch.zeros(0, dtype=torch.long)), pos]).unique()
    return dead


@pytest.mark.parametrize("make_opt", [_sgd, _adamw], ids=["sgd", "adamw"])
@pytest.mark.parametrize(
    ("name", "shape"), [("small_cnn", (8, 1, 8, 8)), ("resnet20", (4, 3, 16, 16))], ids=["small_cnn", "resnet20"]
)
def test_optimizer_state_is_remapped(name: str, shape: tuple, make_opt: Callable) -> None:
    torch.manual_seed(0)
    model = create(name, num_classes=10, in_channels=shape[1])
    opt = make_opt(model.parameters())
    x = torch.randn(*shape)
    y = torch.randint(0, 10, (shape[0],))
    s_b = StructureSet(model, x[:1])
    s_b.set_mask(random_mask(s_b, 0.4, seed=2))
    s_b.zero_pruned_(opt)
    model.train()
    for _ in range(2):
        _masked_step(model, opt, s_b, x, y)
    assert all(state for state in opt.state.values())  # momentum / Adam moments exist

    model_a, opt_a = copy.deepcopy((model, opt))
    s_a = StructureSet(model_a, x[:1])
    assert [layer.name for layer in s_a.layers] == [layer.name for layer in s_b.layers]
    s_a.set_mask(s_b.pruned)
    compact(s_a, opt_a)

    # The optimizer now holds exactly the compacted parameters, with sliced state.
    dead = _dead_positions(s_b)
    params_a = dict(model_a.named_parameters())
    params_b = dict(model.named_parameters())
    held = {id(p) for group in opt_a.param_groups for p in group["params"]}
    assert held == {id(p) for p in params_a.values()}
    assert set(map(id, opt_a.state)) <= held
    for pname, p_a in params_a.items():
        p_b = params_b[pname]
        kept_b = _kept(p_b.detach(), dead.get(pname, {}))
        assert p_a.shape == kept_b.shape, pname
        torch.testing.assert_close(p_a.detach(), kept_b, rtol=0, atol=1e-6)
        for key, value in opt.state[p_b].items():
            if isinstance(value, torch.Tensor) and value.shape == p_b.shape:
                torch.testing.assert_close(opt_a.state[p_a][key], _kept(value, dead.get(pname, {})), rtol=0, atol=1e-6)

    # One more step on both: the compacted model follows the masked one exactly.
    x2 = torch.randn(*shape)
    y2 = torch.randint(0, 10, (shape[0],))
    model_a.train()
    _plain_step(model_a, opt_a, x2, y2)
    _masked_step(model, opt, s_b, x2, y2)
    for pname, p_a in model_a.named_parameters():
        kept_b = _kept(params_b[pname].detach(), dead.get(pname, {}))
        torch.testing.assert_close(p_a.detach(), kept_b, rtol=0, atol=1e-6, msg=lambda m, name=pname: f"{name}: {m}")
    model_a.eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model_a(x2), model(x2), rtol=1e-5, atol=1e-5)
