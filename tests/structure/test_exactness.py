"""Exact or refused: norms, activations and grouped convs."""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from decayprune.structure import StructureSet, compact
from decayprune.structure.exactness import find_inexact, output_error


def _masked_vs_compacted(net: nn.Module, s: StructureSet, x: torch.Tensor, fraction: int = 2) -> float:
    ids = [layer.first + i for layer in s.layers for i in range(0, layer.size - 1, fraction)]
    s.set_pruned(ids)
    s.zero_pruned_()
    net.eval()
    with torch.no_grad():
        ref = net(x)
    compact(s)
    with torch.no_grad():
        out = net(x)
    return output_error(ref, out)


def _randomise_norms(net: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if getattr(m, "running_mean", None) is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if isinstance(m, (nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))


def test_groupnorm_prunes_whole_groups_and_compacts_exactly() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 12, 3),
        nn.GroupNorm(4, 12),
        nn.ReLU(),
        nn.Conv2d(12, 6, 3),
        nn.GroupNorm(3, 6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 2),
    )
    _randomise_norms(net)
    x = torch.randn(2, 3, 9, 9)
    s = StructureSet(net, x[:1])
    assert sorted((layer.name, layer.size, layer.block) for layer in s.layers) == [("0", 4, 3), ("3", 3, 2)]
    err = _masked_vs_compacted(net, s, x)
    assert net[1].num_groups == 2 and net[1].num_channels == 6 and net[0].out_channels == 6
    assert net[4].num_groups == 2 and net[4].num_channels == 4
    assert err < 1e-6


def test_layernorm_over_pruned_features_is_refused_statically() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 2))
    s = StructureSet(net, torch.randn(1, 4))
    assert [layer.name for layer in s.layers] == ["2"]  # GELU(0) = 0 and no norm: exact
    frozen = {f.layer: f for f in s.frozen}
    assert frozen["0"].kind == "norm" and "LayerNorm '1'" in frozen["0"].reason


def test_layernorm_would_have_been_inexact() -> None:
    # The refusal is not over-cautious: the same group, forced through, gives a different model.
    net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    _randomise_norms(net)
    s = StructureSet(net, torch.randn(1, 4), ignore_classifier=False)
    assert not [layer for layer in s.layers if layer.name == "0"]
    from decayprune.structure import discovery as ss
    from decayprune.structure.exactness import _trial

    layers_before = ss.static_reason
    try:
        ss.static_reason = lambda *_a, **_k: None  # build the group the static rule refuses
        forced = StructureSet(net, torch.randn(1, 4), ignore_classifier=False)
    finally:
        ss.static_reason = layers_before
    layer = next(layer for layer in forced.layers if layer.name == "0")
    reason = _trial(net, forced.example_inputs, [layer], 1e-6)
    assert reason is not None and "relative error" in reason


def test_batchnorm_without_affine_is_refused() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8, affine=False),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 2),
    )
    s = StructureSet(net, torch.randn(1, 3, 8, 8))
    assert [layer.name for layer in s.layers] == ["3"]
    assert "no affine" in next(f.reason for f in s.frozen if f.layer == "0")


def _sigmoid_net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))


def test_sigmoid_channels_are_refused_by_the_check_and_others_kept() -> None:
    torch.manual_seed(0)
    net = _sigmoid_net()
    x = torch.randn(4, 4)
    unchecked = StructureSet(net, x[:1], verify=False)
    assert sorted(layer.name for layer in unchecked.layers) == ["0", "2"]
    other = _sigmoid_net()
    assert (
        _masked_vs_compacted(other, StructureSet(other, x[:1], verify=False), x) > 1e-3
    )  # really wrong without the check
    s = StructureSet(net, x[:1], verify=True)
    assert [layer.name for layer in s.layers] == ["2"] and s.num_structures == 6
    assert s.layers[0].first == 0 and int(s.layer_of.max()) == 0
    frozen = next(f for f in s.frozen if f.layer == "0")
    assert frozen.kind == "inexact" and "relative error" in frozen.reason
    assert _masked_vs_compacted(net, s, x) < 1e-6


def test_se_gate_sigmoid_is_exact_and_kept() -> None:
    class SE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc1 = nn.Conv2d(8, 4, 1)
            self.fc2 = nn.Conv2d(4, 8, 1)
            self.out = nn.Conv2d(8, 8, 1)
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = F.relu(self.conv(x))
            g = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(y, 1)))))
            z = F.relu(self.out(y * g))
            return self.head(F.adaptive_avg_pool2d(z, 1).flatten(1))

    s = StructureSet(SE(), torch.randn(1, 3, 6, 6), verify=True)
    # conv's channels and the gate fc2's are one group (multiplied together): zeroing it zeroes y * g.
    names = {s.names[id(sl.param)] for layer in s.layers for sl in layer.slices}
    assert len(s.layers) == 3 and {"conv.weight", "fc2.weight", "fc1.weight", "out.weight"} <= names
    assert not [f for f in s.frozen if f.kind == "inexact"]


def test_bisection_costs_few_trials() -> None:
    calls = []

    def trial(_m, _x, layers, _tol):
        calls.append(len(layers))
        return "bad" if any(layer == 5 for layer in layers) else None

    assert find_inexact(nn.Identity(), (), list(range(16)), trial=trial) == {5: "bad"}
    assert len(calls) <= 1 + 2 * 4


def test_grouped_conv_momentum_is_remapped_exactly() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 2),
    )
    x = torch.randn(2, 3, 6, 6)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(x).sum().backward()
    opt.step()
    grouped = net[3].weight
    before = opt.state[grouped]["momentum_buffer"].clone()
    s = StructureSet(net, x[:1])
    layer = next(layer for layer in s.layers if layer.name == "0")
    s.set_pruned([layer.first + 1])  # channel 1 and, bound by the groups, channel 5
    s.zero_pruned_(opt)
    before = opt.state[grouped]["momentum_buffer"].clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compact(s, opt)
    after = opt.state[net[3].weight]["momentum_buffer"]
    assert net[3].in_channels == 6 and after.shape == net[3].weight.shape
    assert torch.equal(after, before[:, [0, 2, 3]])


class _Shuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 8, 1)
        self.c = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle
        return self.c(F.relu(self.b(F.relu(y))).mean((2, 3)))


def test_channel_shuffle_is_checked_by_default_and_refused() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4)
    net = _Shuffle()
    s = StructureSet(net, x[:1])  # verify="auto": the transpose makes the group risky
    assert [layer.name for layer in s.layers] == ["b"]
    assert [f.kind for f in s.frozen if f.layer == "a"] == ["inexact"]
    other = _Shuffle()
    assert _masked_vs_compacted(other, StructureSet(other, x[:1], verify=False), x) > 1e-3  # what it prevents


class _LayerScaleBlock(nn.Module):
    """ConvNeXt-style: a parameter outside any layer scales the block's channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.pw1 = nn.Conv2d(8, 16, 1)
        self.pw2 = nn.Conv2d(16, 8, 1)
        self.gamma = nn.Parameter(torch.rand(16, 1, 1) + 0.5)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.stem(x))
        y = y + self.pw2(F.relu(self.pw1(y)) * self.gamma)
        return self.head(y.mean((2, 3)))


def test_layer_scale_parameter_is_sliced_with_its_channels() -> None:
    torch.manual_seed(0)
    net = _LayerScaleBlock()
    x = torch.randn(2, 3, 6, 6)
    s = StructureSet(net, x[:1])
    layer = next(layer for layer in s.layers if layer.name == "pw1")
    assert "gamma" in {sl.name for sl in layer.slices}
    err = _masked_vs_compacted(net, s, x)
    assert net.gamma.shape[0] == net.pw1.out_channels < 16 and err < 1e-6
