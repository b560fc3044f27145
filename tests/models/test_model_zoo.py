"""Every registered model: output shapes, width scaling, classifier naming, DepGraph tracing."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch_pruning as tp

from decayprune.models import create, list_models

#: Models that need a specific input size; all others are tested at 32x32.
INPUT_HW = {"mlp": (8, 8)}


def _input(name: str, in_channels: int, batch: int = 2) -> torch.Tensor:
    h, w = INPUT_HW.get(name, (32, 32))
    return torch.randn(batch, in_channels, h, w)


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", list_models())
def test_output_shape(name: str, in_channels: int) -> None:
    torch.manual_seed(0)
    model = create(name, num_classes=7, in_channels=in_channels, width=0.5)  # width 1: traced below
    out = model(_input(name, in_channels))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.sum().backward()  # gradients reach the first layer
    first = next(p for p in model.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list_models())
def test_width_half_reduces_params(name: str) -> None:
    full = sum(p.numel() for p in create(name).parameters())
    half = sum(p.numel() for p in create(name, width=0.5).parameters())
    assert half < 0.5 * full  # channel counts halve, so most weights shrink ~4x


@pytest.mark.parametrize("name", list_models())
def test_tiny_width_keeps_at_least_one_channel(name: str) -> None:
    model = create(name, width=0.001)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert m.out_channels >= 1
    assert model(_input(name, 3)).shape == (2, 10)


@pytest.mark.parametrize("name", list_models())
def test_classifier_is_final_linear(name: str) -> None:
    model = create(name, num_classes=7)
    assert isinstance(model.classifier, nn.Linear)
    assert model.classifier.out_features == 7
    assert [m for m in model.modules() if isinstance(m, nn.Linear)][-1] is model.classifier


@pytest.mark.parametrize("name", list_models())
def test_depgraph_traces_and_prunes_groups(name: str) -> None:
    model = create(name).eval()
    x = _input(name, 3, batch=1)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x)

    def groups() -> list:
        return list(graph.get_all_groups(ignored_layers=[model.classifier], root_module_types=[nn.Conv2d, nn.Linear]))

    count = len(groups())
    assert count > 0
    params_before = sum(p.numel() for p in model.parameters())
    for i in sorted({k * count // 6 for k in range(6)}):  # up to 6 groups spread over the depth
        dep, _ = groups()[i][0]  # re-group after each removal: concat offsets shift
        graph.get_pruning_group(dep.target.module, dep.handler, idxs=[0]).prune()
    assert model(x).shape == (1, 10)
    assert sum(p.numel() for p in model.parameters()) < params_before


def test_concat_cnn_couples_consumers_of_the_concatenation() -> None:
    model = create("concat_cnn").eval()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, 3, 32, 32))
    group = graph.get_pruning_group(model.dense[0][0], tp.prune_conv_out_channels, idxs=[0, 1])
    consumers = {dep.target.module for dep, _ in group if dep.handler == tp.prune_conv_in_channels}
    # dense[0]'s output is read by dense[1], dense[2] and the transition conv
    assert consumers == {model.dense[1][0], model.dense[2][0], model.transition[0]}


def test_mobilenetv2_uses_depthwise_convs() -> None:
    model = create("mobilenetv2_cifar")
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels == m.out_channels for m in depthwise)


def test_small_cnn_keeps_8x8_at_least_2x2() -> None:
    model = create("small_cnn", in_channels=1)
    seen: list[torch.Size] = []
    for m in model.features:
        if isinstance(m, nn.MaxPool2d):
            m.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    model(torch.zeros(1, 1, 8, 8))
    assert seen and min(s[-1] for s in seen) >= 2
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_resnet_structure() -> None:
    model = create("resnet56")
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3)] == [9, 9, 9]
    projections = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert [(p.in_channels, p.out_channels, p.stride) for p in projections] == [(16, 32, (2, 2)), (32, 64, (2, 2))]
