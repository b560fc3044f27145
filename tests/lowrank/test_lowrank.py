"""LRPET: rank-r projection, energy transfer, BN rectification, factoring, and DPM on ranks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from decayprune.lowrank import LowRankProjector, factorize, following_batchnorms, project, resolve_ranks
from decayprune.measure import count_cost


def _net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def _rank(w: torch.Tensor) -> int:
    """Numerical rank at float32 rounding (singular values below 1e-5 of the largest count as 0)."""
    return int(torch.linalg.matrix_rank(w.detach().reshape(w.shape[0], -1).double(), rtol=1e-5))


@pytest.mark.parametrize("rank", [1, 3, 7])
def test_projection_has_rank_r_and_energy_transfer_keeps_the_frobenius_norm(rank: int) -> None:
    w = torch.randn(12, 5, 3, 3, dtype=torch.float64)
    cut, s_cut = project(w, rank, energy_transfer=False)
    kept, s_kept = project(w, rank)
    assert _rank(cut) == rank and _rank(kept) == rank
    assert torch.count_nonzero(s_kept) == rank
    torch.testing.assert_close(kept.norm(), w.norm(), rtol=1e-12, atol=0)
    assert cut.norm() < w.norm()
    s = torch.linalg.svdvals(w.reshape(12, -1))
    torch.testing.assert_close(s_cut[:rank], s[:rank])  # Eckart-Young: the top values, untouched
    removed = s[rank:].square().sum()
    torch.testing.assert_close(s_kept[:rank].square(), s[:rank].square() + removed / rank)  # uniform transfer


def test_bn_rectification_is_optimal_for_the_normalised_output() -> None:
    net = _net()
    bn = net[1]
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.1, 3.0, 16))
        bn.running_var.copy_(torch.linspace(0.5, 2.0, 16))
    assert following_batchnorms(net, torch.randn(1, 3, 8, 8)) == {"0": bn}
    w = net[0].weight.detach().clone()
    scale = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach().view(-1, 1)
    plain, _ = project(w, 4, energy_transfer=False)
    rectified, _ = project(w, 4, energy_transfer=False, row_scale=scale.flatten())
    assert _rank(rectified) == 4
    err = lambda p: float((scale * (w - p).reshape(16, -1)).norm())  # noqa: E731
    assert err(rectified) < err(plain)


def test_factored_model_equals_the_projected_one_and_its_macs_drop() -> None:
    net = _net()
    x = torch.randn(4, 3, 8, 8)
    proj = LowRankProjector(net, 0.25, example_inputs=x[:1], ignored_layers=["8"])
    assert proj.ranks == {"0": 4, "3": 4, "6": 8}  # a quarter of min(out, in * k * k)
    proj.project_(step=0)
    net.eval()
    before = count_cost(net, x[:1])
    with torch.no_grad():
        reference = net(x)
    done = factorize(net, proj.ranks)
    assert done == {"0": (16 * 27, 4 * (16 + 27)), "3": (16 * 144, 4 * 160), "6": (32 * 256, 8 * 288)}
    after = count_cost(net, x[:1])
    with torch.no_grad():
        out = net(x)
    rel = float((out - reference).norm() / reference.norm())
    assert rel < 1e-5
    assert after.macs < before.macs and after.params < before.params
    assert isinstance(net[3], nn.Sequential) and net[3][0].out_channels == 4


@pytest.mark.parametrize("n", [1, 3, 6])
def test_a_decayed_singular_value_reaches_exactly_zero_in_n_steps(n: int) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    proj = LowRankProjector(net, {"0": 3}, decay_steps=n, energy_transfer=True)
    proj.start(step=0)
    start = proj.singular_values("0")[3:].clone()
    x, y = torch.randn(32, 10), torch.randn(32, 2)
    for step in range(1, n + 3):
        opt.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        opt.step()
        proj.after_step(step)
        s = torch.linalg.svdvals(net[0].weight.detach().double())
        if step < n:
            torch.testing.assert_close(s[3:], start * (n - step) / n, rtol=1e-4, atol=1e-6)
            assert _rank(net[0].weight) > 3
        else:
            set_values = proj.last_singular_values["0"]
            assert torch.all(set_values[3:] == 0) and torch.all(set_values[:3] > 0)  # exactly zero at step N
            assert _rank(net[0].weight) == 3
    assert proj.tail_factor(n) == 0.0


def test_bad_ranks_are_refused() -> None:
    net = _net()
    with pytest.raises(ValueError, match="not a Linear"):
        resolve_ranks(net, {"1": 2})
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        resolve_ranks(net, 1.5)
    with pytest.raises(ValueError, match="rank must be in"):
        project(torch.randn(4, 4), 5)
