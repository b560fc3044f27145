"""SNIP per channel group: |g * w| summed over coupled slices, by hand and on coupled models."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from criteria_testing import context, kill

from decayprune import create_model
from decayprune.criteria import create_criterion, list_criteria, sum_over_slices

G = torch.Generator().manual_seed(0)
XV = torch.randn(12, 3, generator=G, dtype=torch.float64)
YV = torch.arange(12) % 2
BATCHES = [(XV[:6], YV[:6]), (XV[6:], YV[6:])]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def test_snip_is_registered_with_its_needs() -> None:
    assert "snip" in list_criteria()
    assert create_criterion("snip").needs == {"data", "grads"}


def test_snip_sums_absolute_products_by_hand_averaged_over_batches() -> None:
    net = mlp()
    ctx = context(net, XV, BATCHES)
    scores = create_criterion("snip", batches=2, normalize="none").score(ctx)
    by_hand = torch.zeros(4, dtype=torch.float64)
    for x, y in BATCHES:
        net.zero_grad()
        ctx.loss_fn(net(x), y).backward()
        w1, b1, w2 = net[0].weight, net[0].bias, net[2].weight
        by_hand += (w1 * w1.grad).abs().sum(1) + (b1 * b1.grad).abs() + (w2 * w2.grad).abs().sum(0)
    torch.testing.assert_close(scores, (by_hand / 2).float())


def test_snip_differs_from_group_taylor_when_signs_cancel() -> None:
    ctx = context(mlp(), XV, BATCHES[:1])
    snip = create_criterion("snip", batches=1, normalize="none").score(ctx)
    taylor = create_criterion("taylor", batches=1, normalize="none").score(ctx)
    assert bool((snip**2 >= taylor - 1e-6).all())  # |sum g*w|^2 <= (sum |g*w|)^2, by the triangle inequality


@pytest.mark.parametrize("arch", ["resnet20", "concat_cnn"])
def test_snip_scores_line_up_with_coupled_structures(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=4, in_channels=3)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    ctx = context(model, x, [(x, torch.arange(4))])
    s = ctx.structures
    sid = int(torch.argmax(sum_over_slices(s, lambda r: torch.ones(r.shape[0]))))
    kill(ctx, sid)  # a dead channel: zero producer rows, so every |g * w| of its rows is 0 ...
    scores = create_criterion("snip", batches=1, include_consumers=False, normalize="none").score(ctx)
    assert scores.shape == (s.num_structures,) and bool(torch.isfinite(scores).all())
    assert float(scores[sid]) == pytest.approx(0.0, abs=1e-12)
    assert float(scores.max()) > 0
