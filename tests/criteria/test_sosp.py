"""SOSP-H: one HVP with v = theta over the prunable units, checked against an explicit Hessian."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from criteria_testing import context, kill
from torch.func import functional_call

from decayprune import create_model
from decayprune.criteria import bottleneck_layers, create_criterion, criteria_table

G = torch.Generator().manual_seed(0)
X = torch.randn(10, 2, generator=G, dtype=torch.float64)
Y = torch.arange(10) % 2


def test_sosp_h_is_registered_with_its_needs() -> None:
    row = next(r for r in criteria_table() if r["name"] == "sosp_h")
    assert row["needs"] == ["data", "grads", "hvp"] and "ICLR 2022" in row["paper"]


def test_sosp_h_matches_the_explicit_hessian() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    ctx = context(net, X, [(X[:5], Y[:5]), (X[5:], Y[5:])])
    scores = create_criterion("sosp_h", batches=2).score(ctx)

    names = [n for n, _p in net.named_parameters()]
    shapes = [p.shape for _n, p in net.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss_of(vector: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        chunks = vector.split([s.numel() for s in shapes])
        params = {n: c.view(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        return nn.functional.cross_entropy(functional_call(net, params, (xb,)), yb)

    halves = [(X[:5], Y[:5]), (X[5:], Y[5:])]
    grad = sum(torch.autograd.functional.jacobian(lambda v, b=b: loss_of(v, *b), flat) for b in halves) / 2
    hess = sum(torch.autograd.functional.hessian(lambda v, b=b: loss_of(v, *b), flat) for b in halves) / 2
    # unit j of the hidden layer: row j of W1, b1[j], column j of W2 (b2 belongs to no unit)
    masks = []
    for j in range(3):
        w1 = torch.zeros(3, 2, dtype=torch.float64)
        w1[j] = 1
        b1 = torch.zeros(3, dtype=torch.float64)
        b1[j] = 1
        w2 = torch.zeros(2, 3, dtype=torch.float64)
        w2[:, j] = 1
        masks.append(torch.cat([w1.reshape(-1), b1, w2.reshape(-1), torch.zeros(2, dtype=torch.float64)]))
    theta = flat * sum(masks)  # every prunable parameter, zero on b2
    h_theta = hess @ theta
    expected = torch.stack([((flat * m) @ grad + 0.5 * (flat * m) @ h_theta).abs() for m in masks])
    torch.testing.assert_close(scores, expected.float(), rtol=1e-5, atol=1e-7)


def test_bottleneck_layers_reports_layers_a_global_ranking_empties() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    ctx = context(net, X.float())
    s = ctx.structures
    scores = torch.ones(s.num_structures)
    first = next(g for g in s.layers if g.name == "0")
    scores[first.span] = torch.tensor([0.1, 0.2, 0.3, 5.0])
    assert bottleneck_layers(s, scores, prune_fraction=3 / 8, threshold=0.7) == {"0": 0.75}
    assert bottleneck_layers(s, scores, prune_fraction=3 / 8, threshold=0.8) == {}


@pytest.mark.parametrize("arch", ["resnet20", "concat_cnn"])
def test_sosp_h_zeroed_channel_scores_lowest(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=4, in_channels=3)
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    ctx = context(model, x, [(x, torch.arange(8) % 4)])
    sid = 3
    kill(ctx, sid)
    scores = create_criterion("sosp_h", batches=1).score(ctx)
    assert scores.shape == (ctx.structures.num_structures,) and bool(torch.isfinite(scores).all())
    assert float(scores[sid]) == pytest.approx(0.0, abs=1e-9)
    assert float(scores.min()) == float(scores[sid]) and float(scores.max()) > 0
