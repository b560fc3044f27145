"""bn_scale and bn_statistics: hand-computed scores, the Gaussian formulas, residual / concat alignment."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from criteria_testing import context, kill

from decayprune import UserError, create_model
from decayprune.criteria import create_criterion, expected_activation, is_weight_of, sum_over_slices
from decayprune.structure import PRODUCER

X = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))


def conv_bn(gamma: list[float], beta: list[float] | None = None, var: list[float] | None = None) -> nn.Module:
    net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor(gamma))
        net[1].bias.copy_(torch.tensor(beta or [0.0, 0.0, 0.0]))
        net[1].running_var.copy_(torch.tensor(var or [1.0, 1.0, 1.0]))
    return net


def test_bn_scale_is_absolute_gamma() -> None:
    ctx = context(conv_bn([0.5, -2.0, 1.0]), X)
    assert create_criterion("bn_scale").score(ctx).tolist() == [0.5, 2.0, 1.0]


def test_bn_statistics_hand_values() -> None:
    net = conv_bn([1.0, -2.0, 1.0], beta=[0.0, 0.0, -3.0])
    net[1].eps = 1e-12
    scores = create_criterion("bn_statistics").score(context(net, X))
    # E[ReLU(z)], z ~ N(beta, gamma^2): 1/sqrt(2 pi), 2/sqrt(2 pi), and -3 Phi(-3) + phi(-3).
    phi, cdf = math.exp(-4.5) / math.sqrt(2 * math.pi), 0.5 * math.erfc(3 / math.sqrt(2))
    expected = [1 / math.sqrt(2 * math.pi), 2 / math.sqrt(2 * math.pi), -3 * cdf + phi]
    torch.testing.assert_close(scores, torch.tensor(expected), rtol=1e-5, atol=1e-7)


def test_bn_statistics_discounts_channels_with_vanishing_variance() -> None:
    net = conv_bn([1.0, 1.0, 1.0], var=[1.0, 1e-5, 1.0])  # eps = 1e-5: the second channel's std halves
    scores = create_criterion("bn_statistics").score(context(net, X))
    assert float(scores[1]) == pytest.approx(float(scores[0]) * math.sqrt(0.5), rel=1e-5)


@pytest.mark.parametrize("activation", ["relu", "identity"])
@pytest.mark.parametrize("statistic", ["mean", "rms"])
def test_expected_activation_matches_monte_carlo(activation: str, statistic: str) -> None:
    mean, std = torch.tensor([-1.0, 0.0, 0.7, 2.0]), torch.tensor([0.5, 1.0, 2.0, 0.3])
    z = mean + std * torch.randn(400_000, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    f = z.clamp_min(0) if activation == "relu" else z.abs()
    empirical = f.mean(0) if statistic == "mean" else f.pow(2).mean(0).sqrt()
    torch.testing.assert_close(
        expected_activation(mean, std, activation, statistic), empirical.float(), rtol=1e-2, atol=2e-3
    )


def test_bn_criteria_options_are_checked() -> None:
    with pytest.raises(ValueError, match="reduction"):
        create_criterion("bn_scale", reduction="median")
    with pytest.raises(ValueError, match="activation"):
        create_criterion("bn_statistics", activation="gelu")


def test_model_without_norm_layers_is_refused_clearly() -> None:
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(UserError, match="BatchNorm.*l1_filter"):
        create_criterion("bn_scale").score(context(mlp, torch.zeros(2, 4)))


def test_structures_without_norm_rank_last_or_are_refused() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2)
    )
    ctx = context(net, X)
    scores = create_criterion("bn_scale").score(ctx)
    no_bn = next(layer for layer in ctx.structures.layers if layer.name == "3")
    in_no_bn = ctx.structures.layer_of == no_bn.index
    assert scores[in_no_bn].min() > scores[~in_no_bn].max()  # the conv without BN is pruned last
    with pytest.raises(UserError, match="'3'"):
        create_criterion("bn_scale", missing="error").score(ctx)


@pytest.mark.parametrize("arch", ["resnet20", "concat_cnn"])
@pytest.mark.parametrize("reduction", ["sum", "mean", "max"])
def test_bn_scale_reduces_over_coupled_norm_layers(arch: str, reduction: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=10, in_channels=3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(-1, 1)
    ctx = context(model, torch.zeros(1, 3, 8, 8))
    s = ctx.structures
    keep = is_weight_of(nn.BatchNorm2d)
    total = sum_over_slices(s, lambda r: r.abs().sum(1), role=PRODUCER, keep=keep)
    count = sum_over_slices(s, lambda r: torch.ones(r.shape[0]), role=PRODUCER, keep=keep)
    assert count.max() > 1 or arch == "concat_cnn"  # resnet: residual partners share a structure
    scores = create_criterion("bn_scale", reduction=reduction).score(ctx)
    if reduction == "sum":
        torch.testing.assert_close(scores, total)
    elif reduction == "mean":
        torch.testing.assert_close(scores, total / count)
    else:
        assert bool((scores <= total + 1e-6).all()) and bool((scores * count >= total - 1e-6).all())


@pytest.mark.parametrize("arch", ["resnet20", "concat_cnn"])
@pytest.mark.parametrize("name", ["bn_scale", "bn_statistics"])
def test_a_dead_channel_scores_lowest_in_residual_and_concat_models(arch: str, name: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=10, in_channels=3)
    ctx = context(model, torch.zeros(1, 3, 8, 8))
    s = ctx.structures
    # the structure with the most slices (a residual chain, or a channel read by several concatenations)
    sid = int(torch.argmax(sum_over_slices(s, lambda r: torch.ones(r.shape[0]))))
    kill(ctx, sid)
    scores = create_criterion(name).score(ctx)
    assert scores.shape == (s.num_structures,)
    assert float(scores[sid]) == pytest.approx(0.0, abs=1e-6)
    others = torch.cat([scores[:sid], scores[sid + 1 :]])
    assert float(others.min()) > 0
