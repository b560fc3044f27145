"""The one Registry shape used for models, datasets, methods and criteria."""

from __future__ import annotations

import pytest

from decayprune.registry import CRITERIA, DATASETS, METHODS, MODELS, Registry, did_you_mean


def test_register_get_and_list() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("b")
    def b() -> None: ...

    reg.add("a", 1)
    assert reg.get("b") is b and reg.get("a") == 1 and reg.names() == ["a", "b"] and "a" in reg
    assert reg.names("b*") == ["b"] and len(reg) == 2 and list(reg) == ["a", "b"]
    reg.remove("a")
    assert "a" not in reg


def test_unknown_names_list_the_allowed_ones_with_a_hint() -> None:
    reg: Registry[int] = Registry("widget")
    reg.add("spanner", 1)
    with pytest.raises(KeyError, match="unknown widget 'spaner'; allowed: spanner; did you mean 'spanner'"):
        reg.get("spaner")
    assert reg.allowed_message("zzz") == "got 'zzz'; allowed: spanner"
    assert did_you_mean("zzz", ["spanner"]) == ""


def test_taken_names_are_refused_but_a_reimport_replaces() -> None:
    reg: Registry[object] = Registry("widget")
    reg.add("x", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("x", 2)
    reg.add("x", 2, overwrite=True)
    assert reg.get("x") == 2
    with pytest.raises(ValueError, match="non-empty string without whitespace"):
        reg.register("a b")


def test_dataset_names_are_canonical() -> None:
    assert "Fashion_MNIST" in DATASETS and DATASETS.key("Fashion_MNIST") == "fashion-mnist"


def test_the_package_fills_every_registry() -> None:
    assert {"resnet56", "small_cnn"} <= set(MODELS.names())
    assert {"digits", "cifar10"} <= set(DATASETS.names())
    assert {"depgraph", "iterative", "l1", "random"} <= set(METHODS.names())
    assert {"group_norm", "l1_filter", "l2_filter", "random"} <= set(CRITERIA.names())
