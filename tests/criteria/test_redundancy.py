"""Effective rank of the per-sample gradient / activation matrix and the layer caps it gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from criteria_testing import context

from decayprune import DecaySettings, Pruner, PruneSettings, TrainSettings, UserError, caps_from_gradient_rank
from decayprune.criteria import effective_rank


@pytest.mark.parametrize("energy", [0.5, 0.9, 0.99, 1.0])
def test_effective_rank_matches_numpy_on_a_known_spectrum(energy: float) -> None:
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(30, 6)))
    v, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    sv = np.array([5.0, 3.0, 2.0, 0.5, 0.1, 0.0])
    m = u @ np.diag(sv) @ v.T
    s = np.linalg.svd(m, compute_uv=False)
    share = np.cumsum(s**2) / np.sum(s**2)
    expected = int(np.searchsorted(share, energy - 1e-12) + 1)
    assert effective_rank(torch.from_numpy(m), energy) == expected
    assert effective_rank(torch.from_numpy(m), 1.0) == 5  # the zero singular value never counts


def duplicated_mlp() -> nn.Module:
    """Hidden layer '0' has 8 units but only 2 distinct ones (rank 2): 6 of 8 are redundant."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(net[0].weight[:2].repeat(4, 1))
        net[0].bias.copy_(net[0].bias[:2].repeat(4))
    return net


X = torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
Y = torch.arange(64) % 2


def test_activation_caps_follow_the_rank_of_a_layer_with_duplicated_units() -> None:
    net = duplicated_mlp()
    ctx = context(net, X, [(X[:32], Y[:32]), (X[32:], Y[32:])])
    caps = caps_from_gradient_rank(ctx.scoring, source="activation", energy=0.999999, batches=2)
    assert set(caps) == {"0", "2"}
    assert caps["0"] == pytest.approx(1 - 2 / 8)  # 8 columns, 2 distinct: rank 2
    assert caps["2"] < caps["0"]


def test_gradient_caps_follow_the_rank_of_the_gradient_matrix() -> None:
    net = duplicated_mlp()
    net[3] = nn.Identity()  # the gradient at layer '2' is W3^T (softmax - onehot): two classes, rank 1
    ctx = context(net, X, [(X, Y)])
    caps = caps_from_gradient_rank(ctx.scoring, source="grad", energy=0.999999, batches=1)
    assert caps["2"] == pytest.approx(1 - 1 / 6)


def test_caps_refuse_too_few_samples() -> None:
    net = duplicated_mlp()
    ctx = context(net, X, [(X[:4], Y[:4])])
    with pytest.raises(UserError, match="calibration samples"):
        caps_from_gradient_rank(ctx.scoring, batches=1)


def test_caps_bound_what_the_iterative_method_prunes_per_layer() -> None:
    net = duplicated_mlp()
    caps = caps_from_gradient_rank(context(net, X, [(X, Y)]).scoring, source="activation", energy=0.999999)
    settings = PruneSettings(
        method="iterative",
        criterion="l1_filter",
        target_macs_fraction=0.2,
        decay=DecaySettings(policy="oneshot"),
        method_options={"layer_caps": caps},
    )
    pruner = Pruner(net, X[:1], settings, total_steps=6, calibration_data=[(X, Y)])
    opt = pruner.build_optimizer(TrainSettings(lr=1e-4, device="cpu"))
    for _ in range(6):
        opt.zero_grad()
        F.cross_entropy(net(X), Y).backward()
        pruner.after_backward()
        opt.step()
        pruner.after_step()
    s = pruner.structures
    for group in s.layers:
        assert float(s.pruned[group.span].float().mean()) <= caps[group.name] + 1e-9
