"""RigL: ERK densities, constant active count, largest-gradient growth from zero, cosine fraction."""

from __future__ import annotations

import math

import pytest
import torch
from sparse_testing import batch, small_convnet
from torch import nn

from decayprune.sparse import ElementMasks, RigL, erk_densities


def test_erk_meets_the_overall_density_and_favours_small_layers() -> None:
    units = ElementMasks(small_convnet())
    densities = erk_densities(units, 0.3)
    sizes = [w.numel() for w in units.weights]
    assert sum(d * n for d, n in zip(densities, sizes)) == pytest.approx(0.3 * sum(sizes))
    assert all(0 < d <= 1 for d in densities)
    raw = [sum(w.shape) / w.numel() for w in units.weights]
    free = [i for i, d in enumerate(densities) if d < 1]
    ratios = {round(densities[i] / raw[i], 9) for i in free}
    assert len(ratios) == 1  # density proportional to sum(shape)/prod(shape) where not capped at 1


def test_rigl_keeps_the_count_constant_and_grows_the_largest_gradients_from_zero() -> None:
    net = small_convnet()
    units = ElementMasks(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    rigl = RigL(units, density=0.4, t_end=40, delta_t=5, alpha=0.5, distribution="uniform", optimizer=opt)
    counts = [int((~units.pruned[units.span(i)]).sum()) for i in range(units.num_groups)]
    assert counts == [round(0.4 * w.numel()) for w in units.weights]
    x, y = batch()
    updates = 0
    for step in range(1, 41):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        dense_grad = units.per_weight(w.grad for w in units.weights).abs()
        before = units.pruned.clone()
        rigl.after_backward(step)
        assert torch.all(units.per_weight(w.grad for w in units.weights)[before] == 0)
        opt.step()
        dropped, grown = rigl.after_step(step)
        now = [int((~units.pruned[units.span(i)]).sum()) for i in range(units.num_groups)]
        assert now == counts  # constant per layer, hence overall
        weights = units.per_weight(units.weights)
        assert torch.all(weights[units.pruned] == 0)
        momentum = units.per_weight(opt.state[w]["momentum_buffer"] for w in units.weights)
        assert torch.all(momentum[units.pruned] == 0)
        if not rigl.is_update_step(step):
            assert len(grown) == 0
            continue
        updates += 1
        assert len(grown) == len(dropped) > 0
        assert torch.all(weights[grown] == 0) and torch.all(momentum[grown] == 0)  # grown weights start at 0
        for i in range(units.num_groups):  # per layer: the grown are the largest |grad| among the candidates
            span = torch.arange(units.span(i).start, units.span(i).stop)
            layer_grown = grown[(grown >= span[0]) & (grown <= span[-1])]
            layer_dropped = dropped[(dropped >= span[0]) & (dropped <= span[-1])]
            candidates = torch.cat([span[before[span]], layer_dropped])
            k = int(rigl.update_fraction(step) * counts[i])
            assert len(layer_grown) == k
            best = candidates[torch.argsort(dense_grad[candidates], descending=True, stable=True)[:k]]
            assert sorted(best.tolist()) == sorted(layer_grown.tolist())
    assert updates == 7  # steps 5, 10, ..., 35


def test_update_fraction_is_cosine_decayed() -> None:
    rigl = RigL(ElementMasks(nn.Linear(8, 8)), density=0.5, t_end=100, alpha=0.3)
    assert rigl.update_fraction(0) == pytest.approx(0.3)
    assert rigl.update_fraction(50) == pytest.approx(0.15)
    assert rigl.update_fraction(25) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert rigl.update_fraction(100) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="distribution"):
        RigL(ElementMasks(nn.Linear(8, 8)), density=0.5, t_end=10, distribution="er")
