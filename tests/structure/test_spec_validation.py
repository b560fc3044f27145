"""The pruned-model spec is validated on load: allowed attributes per module type, shapes, layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from decayprune.errors import UserError
from decayprune.structure import SpecError, StructureSet, compact, load_pruned, save_pruned


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.GroupNorm(4, 8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = _net().eval()
    x = torch.randn(2, 3, 10, 10)
    s = StructureSet(net, x[:1])
    s.set_pruned([s.layers[0].first, s.layers[1].first + 1])
    s.zero_pruned_()
    compact(s)
    save_pruned(net, tmp_path / "m")
    return tmp_path / "m", net, x


def _edit(base: Path, change) -> None:
    spec = json.loads(base.with_suffix(".json").read_text())
    change(spec)
    base.with_suffix(".json").write_text(json.dumps(spec))


def test_groupnorm_groups_round_trip(saved) -> None:
    base, net, x = saved
    loaded = load_pruned(base, _net()).eval()
    assert loaded[1].num_groups == net[1].num_groups == 3 and loaded[1].num_channels == 6
    torch.testing.assert_close(loaded(x), net(x))


@pytest.mark.parametrize("attr, value", [("stride", [2, 2]), ("padding", [1, 1]), ("eps", 2)])
def test_non_shape_attributes_are_refused(saved, attr: str, value) -> None:
    base, _net_, _x = saved
    target = "1" if attr == "eps" else "0"
    _edit(base, lambda spec: spec["modules"].setdefault(target, {}).__setitem__(attr, value))
    with pytest.raises(SpecError) as info:
        load_pruned(base, _net())
    text = str(info.value)
    assert "m.json" in text and f"modules.{target}.{attr}" in text and "allowed" in text
    assert isinstance(info.value, UserError)


def test_attribute_and_tensor_shape_must_agree(saved) -> None:
    base, _net_, _x = saved
    _edit(base, lambda spec: spec["modules"]["0"].__setitem__("out_channels", 7))
    with pytest.raises(SpecError, match=r"tensors\.0\.weight.*expected \[7, 3, 3, 3\]"):
        load_pruned(base, _net())


@pytest.mark.parametrize(
    "change, where",
    [
        (lambda spec: spec.__setitem__("tensors", [1, 2]), "'tensors'"),
        (lambda spec: spec["tensors"].__setitem__("0.weight", [6, "3"]), "tensors.0.weight"),
        (lambda spec: spec["modules"]["0"].__setitem__("out_channels", -1), "modules.0.out_channels"),
        (lambda spec: spec["modules"].__setitem__("nope", {"out_channels": 3}), "modules.nope"),
        (lambda spec: spec["modules"]["1"].__setitem__("num_groups", 4), "modules.1"),
    ],
)
def test_malformed_specs_name_the_key(saved, change, where: str) -> None:
    base, _net_, _x = saved
    _edit(base, change)
    with pytest.raises(SpecError) as info:
        load_pruned(base, _net())
    assert where in str(info.value)


def test_invalid_json_is_a_spec_error(saved) -> None:
    base, _net_, _x = saved
    base.with_suffix(".json").write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_pruned(base, _net())
