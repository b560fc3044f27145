"""NISP: closed-form backward propagation of the final response layer's importance, by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from criteria_testing import context, kill

from decayprune import create_model
from decayprune.criteria import create_criterion, criteria_table, inf_fs_scores, nisp_propagate

G = torch.Generator().manual_seed(0)
X = torch.randn(16, 3, generator=G, dtype=torch.float64)
Y = torch.arange(16) % 2


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).double()


def test_nisp_is_registered_with_its_needs() -> None:
    row = next(r for r in criteria_table() if r["name"] == "nisp")
    assert row["needs"] == ["data"] and "CVPR 2018" in row["paper"]


def test_nisp_propagates_through_a_three_layer_mlp_by_hand() -> None:
    net = mlp()
    ctx = context(net, X, [(X, Y)])
    scores = create_criterion("nisp", feature_ranking="inf_fs", batches=1).score(ctx)
    with torch.no_grad():
        frl = net[3](net[2](net[1](net[0](X))))  # the input of the last linear layer
    s2 = inf_fs_scores(frl)  # importance of the final response layer's five features
    s1 = net[2].weight.detach().abs().T @ s2  # s_k = |W_{k+1}|^T s_{k+1}, ReLU passes it
    by_name = {g.name: g.span for g in ctx.groups}
    torch.testing.assert_close(scores[by_name["0"]], s1.float())
    torch.testing.assert_close(scores[by_name["2"]], s2.float())


def test_nisp_scales_by_the_batch_norm_and_ignores_signs_and_biases() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double().eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([0.5, -2.0, 1.0, 3.0]))
        net[1].running_var.copy_(torch.tensor([4.0, 1.0, 0.25, 9.0]))
        net[1].bias.copy_(torch.tensor([1.0, -1.0, 2.0, 0.0]))
    s_frl = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    out = nisp_propagate(net, X[:1], "3", s_frl, [net[0]])[net[0]]
    bn = net[1]
    scale = (bn.weight / (bn.running_var + bn.eps).sqrt()).abs().detach()
    torch.testing.assert_close(out, scale * s_frl)


def test_nisp_sums_positions_and_averages_max_pooling_windows() -> None:
    conv = nn.Conv2d(1, 2, 1, bias=False).double()
    net = nn.Sequential(conv, nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 1)).double()
    s_frl = torch.arange(1.0, 9.0, dtype=torch.float64)  # channel 0: 1..4, channel 1: 5..8 (2x2 maps each)
    out = nisp_propagate(net, torch.zeros(1, 1, 4, 4), "3", s_frl, [conv])[conv]
    torch.testing.assert_close(out, torch.tensor([10.0, 26.0], dtype=torch.float64))  # each window spreads its s


def test_inf_fs_matches_a_numpy_implementation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 4)) * np.array([1.0, 3.0, 0.5, 2.0])
    std = x.std(0, ddof=1)
    sigma = np.maximum.outer(std, std)
    sigma = (sigma - sigma.min()) / (sigma.max() - sigma.min())
    ranks = x.argsort(0).argsort(0)
    rho = np.corrcoef(ranks.T)  # Spearman: Pearson of the ranks
    a = 0.5 * sigma + 0.5 * (1 - np.abs(rho))
    r = 0.9 / np.abs(np.linalg.eigvalsh(a)).max()
    expected = (np.linalg.inv(np.eye(4) - r * a) - np.eye(4)).sum(1)
    np.testing.assert_allclose(inf_fs_scores(torch.from_numpy(x)).numpy(), expected, rtol=1e-8)


@pytest.mark.parametrize("ranking", ["inf_fs", "uniform"])
@pytest.mark.parametrize("arch", ["resnet20", "concat_cnn"])
def test_nisp_zeroed_channel_scores_lowest(arch: str, ranking: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=4, in_channels=3)
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    ctx = context(model, x, [(x, torch.arange(8) % 4)])
    sid = 3
    kill(ctx, sid)
    scores = create_criterion("nisp", feature_ranking=ranking, batches=1).score(ctx)
    assert scores.shape == (ctx.structures.num_structures,) and bool(torch.isfinite(scores).all())
    assert float(scores[sid]) == pytest.approx(0.0, abs=1e-12)
    assert float(scores.min()) == float(scores[sid]) and float(scores.max()) > 0
    assert int((scores <= 0).sum()) == 1  # only the zeroed channel
