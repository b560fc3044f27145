"""Registry behaviour: listing, creation, duplicate names, unknown-name errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from decayprune.models import create, list_models, register_model
from decayprune.registry import MODELS

BUILTINS = [
    "concat_cnn",
    "mlp",
    "mobilenetv2_cifar",
    "resnet110",
    "resnet20",
    "resnet32",
    "resnet56",
    "small_cnn",
    "vgg16",
    "vgg19",
]


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test register names without leaking them into the shared registry."""
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))


def test_builtins_are_registered_and_sorted() -> None:
    names = list_models()
    assert set(BUILTINS) <= set(names)
    assert names == sorted(names)


def test_list_models_filters_with_fnmatch() -> None:
    assert list_models("resnet*") == ["resnet110", "resnet20", "resnet32", "resnet56"]
    assert list_models("vgg1?") == ["vgg16", "vgg19"]
    assert list_models("no_such_model*") == []


def test_register_and_create_custom_model(isolated_registry: None) -> None:
    @register_model("tiny_test_net")
    def tiny(*, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, bias: bool = True) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 4, num_classes, bias=bias))

    assert "tiny_test_net" in list_models()
    model = create("tiny_test_net", num_classes=5, in_channels=2, bias=False)
    assert model(torch.zeros(3, 2, 2, 2)).shape == (3, 5)
    assert model[1].bias is None  # extra kwargs reach the constructor


def test_duplicate_registration_fails(isolated_registry: None) -> None:
    def first(**kwargs: object) -> nn.Module:
        return nn.Identity()

    def second(**kwargs: object) -> nn.Module:
        return nn.Identity()

    register_model("dup_test_net")(first)
    with pytest.raises(ValueError, match="already registered"):
        register_model("dup_test_net")(second)
    with pytest.raises(ValueError, match="resnet56"):
        register_model("resnet56")(second)
    assert MODELS.get("dup_test_net") is first


def test_same_definition_registered_again_is_not_a_duplicate(isolated_registry: None) -> None:
    # What happens when a model module is imported twice (reload, doctest collection):
    # a new function object from the same source definition.
    def factory() -> object:
        def build(**kwargs: object) -> nn.Module:
            return nn.Identity()

        return build

    old, new = factory(), factory()
    assert old is not new
    register_model("reimported_net")(old)
    register_model("reimported_net")(new)
    assert MODELS.get("reimported_net") is new


@pytest.mark.parametrize("bad", ["", "has space", 3])
def test_register_rejects_bad_names(bad: object) -> None:
    with pytest.raises(ValueError, match="model name"):
        register_model(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("typo", "suggestion"), [("resnet57", "resnet56"), ("vgg-16", "vgg16"), ("smallcnn", "small_cnn")]
)
def test_unknown_name_suggests_close_match(typo: str, suggestion: str) -> None:
    with pytest.raises(ValueError) as info:
        create(typo)
    message = str(info.value)
    assert repr(typo) in message
    available, _, hint = message.partition("did you mean")
    assert repr(suggestion) in hint
    assert "allowed:" in available and "mobilenetv2_cifar" in available


def test_unknown_name_without_close_match_lists_available() -> None:
    with pytest.raises(ValueError) as info:
        create("zzzzzz")
    assert "did you mean" not in str(info.value)
    assert all(name in str(info.value) for name in BUILTINS)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"in_channels": -1}, "in_channels"),
        ({"width": 0.0}, "width"),
        ({"width": float("nan")}, "width"),
        ({"num_classes": 2.5}, "num_classes"),
    ],
)
def test_bad_common_arguments_raise(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        create("small_cnn", **kwargs)


def test_unknown_kwarg_is_rejected() -> None:
    with pytest.raises(TypeError):
        create("resnet20", image_size=(8, 8))


def test_mlp_image_size_and_validation() -> None:
    model = create("mlp", in_channels=1, image_size=(28, 28))
    assert model.fc1.in_features == 28 * 28
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="784 features"):
        model(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="image_size"):
        create("mlp", image_size=(8,))
    with pytest.raises(ValueError, match="hidden"):
        create("mlp", hidden=(0, 4))
    assert create("mlp", width=0.5).fc1.out_features == 128


def test_resnet_and_vgg_reject_bad_depth() -> None:
    from decayprune.models.resnet_cifar import CifarResNet
    from decayprune.models.vgg import VGG

    with pytest.raises(ValueError, match="6n \\+ 2"):
        CifarResNet(21)
    with pytest.raises(ValueError, match="VGG depth"):
        VGG(13)
