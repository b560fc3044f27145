"""count_cost against hand-computed MAC and parameter formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch_pruning.utils import op_counter

from decayprune.measure import ModelCost, count_cost, flop_counter_macs


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


class _Attention(nn.Module):
    """Self-attention written with functional matmuls (what the module counter cannot see)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) / (d // self.heads) ** 0.5
        return self.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d))


class _Block(nn.Module):
    def __init__(self, dim: int = 128, heads: int = 4) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim, bias=False), nn.GELU(), nn.Linear(4 * dim, dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def test_attention_macs_match_flop_counter() -> None:
    model = nn.Sequential(_Block(), _Block())
    x = torch.zeros(1, 64, 128)
    ours, flop = count_cost(model, x), flop_counter_macs(model, x)
    dim, tokens = 128, 64
    scores = 2 * 2 * tokens * tokens * dim  # two blocks, q @ k.T and attn @ v
    assert ours.uncounted_macs == scores  # exactly what the module counter misses
    assert abs(ours.macs - flop) / flop < 0.01  # the rest: LayerNorm and GELU elements (0.5%)
    old = count_cost(model, x, counter="torch_pruning")
    assert (flop - old.macs) / flop > 0.05  # the module counter alone is 7% short
    assert ours.macs == old.macs + scores and ours.counter == "torch_pruning+flop_counter"


def test_functional_linear_and_batch_are_counted_per_sample() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(3, 4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.linear(x, self.weight)

    cost = count_cost(Functional(), torch.zeros(5, 4))
    assert (cost.macs, cost.uncounted_macs) == (12, 12)
    assert count_cost(Functional(), torch.zeros(5, 4), counter="flop_counter").macs == 12
    with pytest.raises(ValueError, match="counter must be one of"):
        count_cost(Functional(), torch.zeros(1, 4), counter="fvcore")  # type: ignore[arg-type]
