"""SNIP: exactly the weights with the smallest normalised |g*w| are pruned, once, before training."""

from __future__ import annotations

import torch
from sparse_testing import batch, small_convnet
from torch import nn

from decayprune.sparse import ElementMasks, snip_scores, snip_select


def test_snip_prunes_exactly_the_smallest_normalised_sensitivities() -> None:
    net = small_convnet()
    units = ElementMasks(net)
    batches = [batch(seed) for seed in (1, 2, 3)]
    scores = snip_scores(units, net, batches, nn.functional.cross_entropy)
    # by hand: gradients summed over the three batches, |g*w| per weight, normalised globally
    net.zero_grad()
    for x, y in batches:
        nn.functional.cross_entropy(net(x), y).backward()
    by_hand = torch.cat([(m.weight.grad * m.weight).abs().flatten() for m in (net[0], net[3], net[6])])
    by_hand = by_hand / by_hand.sum()
    torch.testing.assert_close(scores, by_hand)
    assert abs(float(scores.sum()) - 1) < 1e-5
    ids = snip_select(units, scores, 0.7)
    k = round(0.7 * units.num_structures)
    assert sorted(ids.tolist()) == sorted(torch.argsort(by_hand, stable=True)[:k].tolist())
    units.set_pruned(ids)
    units.zero_pruned_()
    assert torch.all(units.per_weight(units.weights)[ids] == 0) and units.sparsity() == k / units.num_structures
