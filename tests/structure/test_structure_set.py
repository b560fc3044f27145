"""StructureSet: one structure per channel, producer norms, masks, errors and the cost model."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from structure_testing import random_mask, randomize_bn

from decayprune.measure import count_cost
from decayprune.models import create
from decayprune.structure import (
    PRODUCER,
    StructureSet,
    compact,
    find_classifier,
)


def tiny_net() -> nn.Sequential:
    """conv(3->6)-BN-ReLU-conv(6->5)-BN-ReLU-flatten-linear(->3) for 8x8 inputs."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, bias=True),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 5, 3, bias=False),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 4 * 4, 3),
    )
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight)
            nn.init.normal_(m.bias)
    return net


def layer_by_name(s: StructureSet, name: str):
    return next(layer for layer in s.layers if layer.name == name)


def test_one_structure_per_channel_and_classifier_ignored() -> None:
    net = tiny_net()
    s = StructureSet(net, torch.randn(1, 3, 8, 8))
    assert s.num_structures == 6 + 5
    assert sorted(layer.name for layer in s.layers) == ["0", "3"]
    assert layer_by_name(s, "0").size == 6 and layer_by_name(s, "3").size == 5
    # Structure ids tile 0..S-1 without gaps or overlap.
    ids = torch.cat([layer.ids for layer in s.layers]).sort().values
    assert torch.equal(ids, torch.arange(s.num_structures))
    # No slice of the classifier's output rows is a producer.
    producer_names = {sl.name for _layer, sl, _ids in s.parameter_slices(PRODUCER)}
    assert "7.weight" not in producer_names and "7.bias" not in producer_names
    assert find_classifier(net, torch.randn(1, 3, 8, 8)) is net[7]


def test_classifier_becomes_prunable_when_not_ignored() -> None:
    s = StructureSet(tiny_net(), torch.randn(1, 3, 8, 8), ignore_classifier=False)
    assert s.num_structures == 6 + 5 + 3


def test_ignored_layers_are_not_structures() -> None:
    net = tiny_net()
    s = StructureSet(net, torch.randn(1, 3, 8, 8), ignored_layers=[net[0]])
    assert [layer.name for layer in s.layers] == ["3"]
    assert s.num_structures == 5


def test_producer_norms_match_hand_computation() -> None:
    net = tiny_net()
    s = StructureSet(net, torch.randn(1, 3, 8, 8))
    norms = s.producer_norms()
    conv0, bn0, conv1, bn1 = net[0], net[1], net[3], net[4]
    with torch.no_grad():
        hand0 = (conv0.weight.pow(2).sum((1, 2, 3)) + conv0.bias.pow(2) + bn0.weight.pow(2) + bn0.bias.pow(2)).sqrt()
        hand1 = (conv1.weight.pow(2).sum((1, 2, 3)) + bn1.weight.pow(2) + bn1.bias.pow(2)).sqrt()
    l0, l1 = layer_by_name(s, "0"), layer_by_name(s, "3")
    torch.testing.assert_close(norms[l0.first : l0.first + l0.size], hand0, rtol=1e-6, atol=0)
    torch.testing.assert_close(norms[l1.first : l1.first + l1.size], hand1, rtol=1e-6, atol=0)
    # Restricting to one layer leaves the others at zero.
    only1 = s.producer_norms([l1.index])
    assert torch.all(only1[l0.first : l0.first + l0.size] == 0)
    torch.testing.assert_close(only1[l1.first : l1.first + l1.size], hand1, rtol=1e-6, atol=0)


def test_group_norms_include_consumer_columns() -> None:
    net = tiny_net()
    s = StructureSet(net, torch.randn(1, 3, 8, 8))
    l0 = layer_by_name(s, "0")
    with torch.no_grad():
        producer_sq = s.producer_norms().pow(2)
        consumer_sq = net[3].weight.pow(2).sum((0, 2, 3))  # in-channel columns of the next conv
    group = s.group_sq_norms(include_consumers=True)
    torch.testing.assert_close(
        group[l0.first : l0.first + l0.size],
        producer_sq[l0.first : l0.first + l0.size] + consumer_sq,
        rtol=1e-5,
        atol=0,
    )
    counts = s.slice_counts(include_consumers=True)
    # conv0 row (27) + bias + gamma + beta + conv1 column (5 * 9)
    assert torch.all(counts[l0.first : l0.first + l0.size] == 27 + 3 + 45)
    # The same structures counted in coupled slices: conv0 weight, bias, gamma, beta, conv1 weight.
    assert torch.all(s.slice_counts(elements=False)[l0.first : l0.first + l0.size] == 5)


def test_grad_norms_read_gradients() -> None:
    net = tiny_net()
    s = StructureSet(net, torch.randn(1, 3, 8, 8))
    assert torch.all(s.grad_norms() == 0)  # no gradients yet
    net(torch.randn(4, 3, 8, 8)).square().sum().backward()
    l1 = layer_by_name(s, "3")
    hand = (net[3].weight.grad.pow(2).sum((1, 2, 3)) + net[4].weight.grad.pow(2) + net[4].bias.grad.pow(2)).sqrt()
    torch.testing.assert_close(s.grad_norms()[l1.first : l1.first + l1.size], hand, rtol=1e-5, atol=0)


def test_zero_pruned_zeroes_weights_grads_and_optimizer_state() -> None:
    net = tiny_net()
    s = StructureSet(net, torch.randn(1, 3, 8, 8))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(4, 3, 8, 8)).square().sum().backward()
    opt.step()
    l0 = layer_by_name(s, "0")
    sid = l0.first + 2
    s.set_pruned([sid])
    s.zero_pruned_(opt)
    assert s.producer_norms()[sid] == 0
    assert torch.all(net[0].weight[2] == 0) and net[0].bias[2] == 0 and net[1].weight[2] == 0 and net[1].bias[2] == 0
    assert torch.all(net[0].weight.grad[2] == 0)
    assert torch.all(opt.state[net[0].weight]["momentum_buffer"][2] == 0)
    # Other channels untouched.
    assert torch.all(s.producer_norms()[s.pruned.logical_not()] > 0)
    with pytest.raises(ValueError, match="shape"):
        s.set_mask(torch.zeros(3, dtype=torch.bool))


def test_scale_producers_scales_only_producer_slices() -> None:
    net = tiny_net()
    s = StructureSet(net, torch.randn(1, 3, 8, 8))
    before = s.producer_norms()
    consumer = net[3].weight.detach().clone()
    factors = torch.linspace(0.5, 2.0, s.num_structures)
    s.scale_producers_(factors)
    torch.testing.assert_close(s.producer_norms(), before * factors, rtol=1e-5, atol=0)
    # The consumer columns of layer 0 (in-columns of conv 3) are scaled only as conv 3's producer rows.
    l1 = layer_by_name(s, "3")
    row_factor = factors[l1.first : l1.first + l1.size].view(-1, 1, 1, 1)
    torch.testing.assert_close(net[3].weight.detach(), consumer * row_factor, rtol=1e-6, atol=0)


@pytest.mark.parametrize("training", [True, False])
def test_building_keeps_the_training_flag(training: bool) -> None:
    net = tiny_net().train(training)
    StructureSet(net, torch.randn(1, 3, 8, 8))
    assert all(m.training == training for m in net.modules())


def test_round_to_is_refused_with_its_replacement() -> None:
    with pytest.raises(ValueError, match=r"round_to=0\).*width_multiple=N"):
        StructureSet(tiny_net(), torch.randn(1, 3, 8, 8), round_to=0)  # type: ignore[arg-type]


class _Mixer(nn.Module):
    """Owns a raw parameter used through F.linear: decayprune cannot slice it."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.w)


class _CustomNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.mixer = _Mixer()
        self.fc2 = nn.Linear(8, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.mixer(F.relu(self.fc1(x))))
        return self.head(F.relu(self.fc2(x)))


def test_unsupported_module_freezes_its_groups_and_names_the_layer() -> None:
    # A parameter used as a matrix (F.linear) mixes channels the graph cannot follow: the groups
    # that reach it are refused (frozen, with the layer named), never cut wrongly.
    s = StructureSet(_CustomNet(), torch.randn(1, 4))
    frozen = {f.layer: f for f in s.unsupported}
    assert "fc1" in frozen and "'mixer'" in frozen["fc1"].reason and "_Mixer" in frozen["fc1"].reason
    assert "mixer" not in [layer.name for layer in s.layers]


def test_unsupported_module_can_be_ignored() -> None:
    torch.manual_seed(0)
    net = _CustomNet()
    x = torch.randn(3, 4)
    s = StructureSet(net, x[:1], ignored_layers=[net.mixer])
    # The ignored module is kept whole, so fc1 (whose channels it reads) is not prunable;
    # fc2 (after it) is; the head is the classifier.
    assert [layer.name for layer in s.layers] == ["fc2"] and s.num_structures == 5
    s.set_pruned([1, 4])
    s.zero_pruned_()
    with torch.no_grad():
        ref = net(x)
    compact(s)
    with torch.no_grad():
        out = net(x)
    assert net.fc2.out_features == 3 and net.head.in_features == 3
    assert tuple(net.mixer.w.shape) == (8, 6) and net.fc1.out_features == 6
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_depthwise_model_builds() -> None:
    model = create("mobilenetv2_cifar", num_classes=10, width=0.5)
    s = StructureSet(model, torch.randn(1, 3, 32, 32))
    assert s.num_structures > 0
    depthwise = {
        name + ".weight"
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and m.groups == m.out_channels > 1
    }
    assert depthwise
    producers = {sl.name for _l, sl, _i in s.parameter_slices(PRODUCER)}
    # Every depthwise conv is sliced as a producer of the channel group it sits in.
    assert depthwise <= producers
    assert all(layer.channel_groups == 1 for layer in s.layers)


def _grouped_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 6, 1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 8 * 8, 3),
    )
    randomize_bn(net, seed=1)
    return net.eval()


def test_grouped_conv_binds_channels_across_groups() -> None:
    net = _grouped_net()
    x = torch.randn(2, 3, 8, 8)
    s = StructureSet(net, x[:1])
    first, grouped = layer_by_name(s, "0"), layer_by_name(s, "3")
    # Channel j of the conv feeding a 2-group conv is bound to channel j + 4.
    assert first.channel_groups == 2 and first.size == 4
    assert grouped.channel_groups == 2 and grouped.size == 4
    s.set_pruned([first.first + 1, grouped.first])
    s.zero_pruned_()
    predicted_macs, predicted_params = s.macs(), s.params()
    with torch.no_grad():
        ref = net(x)
    compact(s)
    with torch.no_grad():
        out = net(x)
    assert net[0].out_channels == 6 and net[3].in_channels == 6 and net[3].out_channels == 6
    assert ((out - ref).norm() / ref.norm()).item() < 1e-5
    cost = count_cost(net, x[:1])
    assert predicted_params == cost.params
    assert predicted_macs == pytest.approx(cost.macs, rel=0.05)


# ---------------------------------------------------------------------------- cost model


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("small_cnn", {"in_channels": 1}, (1, 1, 8, 8)),
        ("mlp", {}, (1, 3, 8, 8)),
        ("concat_cnn", {}, (1, 3, 16, 16)),
        ("resnet20", {}, (1, 3, 32, 32)),
        ("mobilenetv2_cifar", {"width": 0.5}, (1, 3, 32, 32)),
    ],
)
def test_cost_model_matches_counter(name: str, kwargs: dict, shape: tuple) -> None:
    torch.manual_seed(0)
    model = create(name, num_classes=10, **kwargs).eval()
    x = torch.randn(*shape)
    s = StructureSet(model, x)
    full = count_cost(model, x)
    assert s.macs() == pytest.approx(full.macs, rel=0.02)
    assert s.params() == full.params
    mask = random_mask(s, 0.4, seed=3)
    s.set_mask(mask)
    s.zero_pruned_()
    predicted_macs, predicted_params = s.macs(), s.params()
    assert predicted_macs < s.cost.full_macs
    compact(s)
    after = count_cost(model, x)
    assert predicted_params == after.params
    # The analytic model leaves out activations and pooling; the ratio to the base is what budgets use.
    assert predicted_macs / s.cost.full_macs == pytest.approx(after.macs / full.macs, abs=0.01)


def test_macs_monotone_in_mask() -> None:
    model = create("small_cnn", in_channels=1)
    s = StructureSet(model, torch.randn(1, 1, 8, 8))
    small = random_mask(s, 0.2, seed=0)
    large = small | random_mask(s, 0.3, seed=1)
    assert s.macs(small) <= s.macs(torch.zeros_like(small)) and s.macs(large) <= s.macs(small)
    assert s.params(large) <= s.params(small)
    described = {row["layer"]: row for row in s.describe()}
    assert sum(row["pruned"] for row in described.values()) == 0
