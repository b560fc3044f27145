"""Parameter and MAC counts of the reference models against published sizes (within 3%)."""

from __future__ import annotations

import pytest
import torch

from decayprune.measure import count_cost
from decayprune.models import create

# (name, params, MACs) at 1x3x32x32, 10 classes; sizes quoted for CIFAR models in the literature.
REFERENCE = [
    ("resnet20", 0.27e6, 41e6),
    ("resnet56", 0.85e6, 125e6),
    ("vgg16", 14.7e6, 313e6),
]


@pytest.mark.parametrize(("name", "params", "macs"), REFERENCE)
def test_reference_sizes(name: str, params: float, macs: float) -> None:
    cost = count_cost(create(name, num_classes=10), torch.zeros(1, 3, 32, 32))
    assert cost.params == pytest.approx(params, rel=0.03)
    assert cost.macs == pytest.approx(macs, rel=0.03)


def test_deeper_resnets_cost_more() -> None:
    x = torch.zeros(1, 3, 8, 8)
    costs = [count_cost(create(f"resnet{d}"), x) for d in (20, 32, 56, 110)]
    assert all(a.macs < b.macs and a.params < b.params for a, b in zip(costs, costs[1:]))
