"""HRank and CHIP: ranks and nuclear norms by hand, sample counting, residual / concat alignment."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from criteria_testing import context, kill

from decayprune import create_model
from decayprune.criteria import channel_independence, create_criterion, feature_map_ranks, sum_over_slices

X = torch.tensor([[1.0, 2.0], [3.0, 1.0]]).view(1, 1, 2, 2)  # a positive rank-2 map
W = [2.0, -1.0, 0.5]


def net() -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(1, 3, 1, bias=False), nn.BatchNorm2d(3, eps=1e-12), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)
    )
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(W).view(3, 1, 1, 1))  # BN is the identity: channel c is relu(w_c * x)
    return model


def test_rank_and_independence_by_hand() -> None:
    maps = torch.randn(2, 5, 4, 3, generator=torch.Generator().manual_seed(0))
    maps[0, 1] = 0.0
    maps[1, 2, :, 1:] = 0.0
    assert feature_map_ranks(maps).tolist() == [6.0, 3.0, 4.0, 6.0, 6.0]
    brute = torch.zeros(5, dtype=torch.float64)
    for sample in maps.double().reshape(2, 5, -1):
        for c in range(5):
            without = sample.clone()
            without[c] = 0
            brute[c] += torch.linalg.matrix_norm(sample, "nuc") - torch.linalg.matrix_norm(without, "nuc")
    torch.testing.assert_close(channel_independence(maps), brute)


def test_hrank_on_a_tiny_network() -> None:
    scores = create_criterion("hrank", normalize="none").score(context(net(), X, [(X, torch.tensor([0]))]))
    assert scores.tolist() == [2.0, 0.0, 2.0]  # relu(-x) is all zero


def test_chip_on_a_tiny_network() -> None:
    scores = create_criterion("chip", normalize="none").score(context(net(), X, [(X, torch.tensor([0]))]))
    norm_w, norm_x = math.sqrt(4 + 0.25), float(X.norm())  # rows 2x, 0, x/2: rank one
    expected = [(norm_w - 0.5) * norm_x, 0.0, (norm_w - 2.0) * norm_x]
    torch.testing.assert_close(scores, torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_feature_map_criteria_read_exactly_the_requested_samples() -> None:
    x = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(8, dtype=torch.long)
    model = net()
    split = create_criterion("chip", samples=6, normalize="none").score(
        context(model, x, [(x[:4], y[:4]), (x[4:], y[4:])])
    )
    whole = create_criterion("chip", samples=6, normalize="none").score(context(model, x, [(x[:6], y[:6])]))
    other = create_criterion("chip", samples=8, normalize="none").score(context(model, x, [(x, y)]))
    torch.testing.assert_close(split, whole)
    assert not torch.allclose(whole, other)


@pytest.mark.parametrize("arch", ["resnet20", "concat_cnn"])
@pytest.mark.parametrize("name", ["hrank", "chip"])
def test_feature_map_scores_line_up_with_coupled_structures(arch: str, name: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=4, in_channels=3)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    ctx = context(model, x, [(x, torch.arange(4))])
    s = ctx.structures
    sid = int(torch.argmax(sum_over_slices(s, lambda r: torch.ones(r.shape[0]))))
    kill(ctx, sid)
    scores = create_criterion(name, samples=4).score(ctx)
    assert scores.shape == (s.num_structures,) and bool(torch.isfinite(scores).all())
    assert float(scores[sid]) == pytest.approx(0.0, abs=1e-6)
    assert float(scores.max()) > 0
