"""ThiNet: the greedy order against a plain re-implementation, a hand case, coupled structures."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from criteria_testing import context, kill

from decayprune import create_model
from decayprune.criteria import create_criterion, greedy_removal_order, sum_over_slices


def slow_greedy(z: list[list[float]]) -> list[int]:
    left, chosen, partial = set(range(len(z[0]))), [], [0.0] * len(z)
    while left:
        best = min(sorted(left), key=lambda c: sum((p + row[c]) ** 2 for p, row in zip(partial, z, strict=True)))
        chosen.append(best)
        left.remove(best)
        partial = [p + row[best] for p, row in zip(partial, z, strict=True)]
    return chosen


def test_greedy_order_matches_a_plain_loop() -> None:
    z = torch.randn(30, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert greedy_removal_order(z).tolist() == slow_greedy(z.tolist())


def test_thinet_keeps_what_the_next_layer_needs() -> None:
    net = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))  # h = (x0, x1, x0 + x1)
        net[2].weight.copy_(torch.tensor([[1.0, 1.0, -1.0], [2.0, 2.0, -2.0]]))  # z = w * (x0, x1, -(x0 + x1))
    x = torch.rand(16, 2, generator=torch.Generator().manual_seed(1)) * torch.tensor([0.1, 1.0]) + torch.tensor(
        [0.0, 1.0]
    )
    ctx = context(net, x, [(x, torch.zeros(16, dtype=torch.long))])
    # x0 is small: removed first; then channel 2 (its sum with channel 0 leaves only -x1); channel 1 last.
    scores = create_criterion("thinet", batches=1, entries=200).score(ctx)
    torch.testing.assert_close(scores, torch.tensor([0.0, 2 / 3, 1 / 3]))


@pytest.mark.parametrize("arch", ["resnet20", "concat_cnn"])
def test_thinet_scores_line_up_with_coupled_structures(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=4, in_channels=3)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    ctx = context(model, x, [(x, torch.arange(4))])
    s = ctx.structures
    sid = int(torch.argmax(sum_over_slices(s, lambda r: torch.ones(r.shape[0]))))
    kill(ctx, sid)
    scores = create_criterion("thinet", batches=1, entries=64).score(ctx)
    assert scores.shape == (s.num_structures,) and float(scores[sid]) == 0.0  # a dead channel goes first
    for layer in s.layers:  # each layer holds a permutation of 0, 1/n, ..., (n-1)/n
        got = sorted((scores[layer.first : layer.first + layer.size] * layer.size).round().tolist())
        assert got == [float(i) for i in range(layer.size)], layer.name
