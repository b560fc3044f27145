"""count_cost against hand-computed MAC and parameter formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch_pruning.utils import op_counter

from decayprune.measure import ModelCost, count_cost


def _conv_linear(bias: bool = True) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.Flatten(), nn.Linear(8 * 5 * 5, 4, bias=bias))


def test_conv_plus_linear_matches_formula() -> None:
    h = w = 5
    conv = 3 * 3 * 3 * 8 * h * w + 8 * h * w  # k*k*cin*cout per output position + bias per output element
    linear = (8 * h * w) * 4 + 4
    params = (3 * 3 * 3 * 8 + 8) + (8 * h * w * 4 + 4)
    assert count_cost(_conv_linear(), torch.zeros(1, 3, h, w)) == ModelCost(macs=conv + linear, params=params)


def test_no_bias_and_depthwise_conv() -> None:
    model = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False), nn.Conv2d(6, 4, 1, bias=False))
    cost = count_cost(model, torch.zeros(1, 6, 4, 4))
    assert cost.macs == 9 * 1 * 6 * 16 + 6 * 4 * 16
    assert cost.params == 6 * 9 + 6 * 4


def test_norm_and_activation_modules_count_per_element() -> None:
    model = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU())
    cost = count_cost(model, torch.zeros(1, 4, 3, 3))
    assert cost.macs == 2 * 36 + 36  # affine BN: 2 per element; ReLU: 1 per element
    assert cost.params == 8


def test_conv_subclass_is_counted() -> None:
    class MyConv(nn.Conv2d):
        pass

    model = nn.Sequential(MyConv(2, 3, 1, bias=False))
    assert count_cost(model, torch.zeros(1, 2, 4, 4)).macs == 2 * 3 * 16
    assert op_counter.CUSTOM_MODULES_MAPPING == {}  # the counter's global is left clean


def test_macs_are_per_sample() -> None:
    model = _conv_linear(bias=False)
    one = count_cost(model, torch.zeros(1, 3, 5, 5))
    four = count_cost(model, torch.zeros(4, 3, 5, 5))
    assert one.macs == four.macs and one.params == four.params


def test_tuple_and_dict_inputs() -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 2, bias=False)
            self.b = nn.Linear(5, 2, bias=False)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(y)

    x, y = torch.zeros(1, 3), torch.zeros(1, 5)
    expected = 3 * 2 + 5 * 2
    assert count_cost(TwoInputs(), (x, y)).macs == expected
    assert count_cost(TwoInputs(), [x, y]).macs == expected
    assert count_cost(TwoInputs(), {"x": x, "y": y}).macs == expected


@pytest.mark.parametrize("training", [True, False])
def test_model_is_left_untouched(training: bool) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    model.train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_cost(model, torch.randn(2, 3, 8, 8) * 5 + 3)
    assert model.training is training
    assert all(m.training is training for m in model.modules())
    for key, value in model.state_dict().items():  # BN running stats not updated
        assert torch.equal(value, before[key]), key
    assert all(not m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="nn.Module"):
        count_cost(lambda x: x, torch.zeros(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="example_inputs"):
        count_cost(nn.Linear(2, 2), 3)  # type: ignore[arg-type]


def test_model_cost_is_frozen() -> None:
    cost = ModelCost(macs=1, params=2)
    with pytest.raises(AttributeError):
        cost.macs = 3  # type: ignore[misc]
