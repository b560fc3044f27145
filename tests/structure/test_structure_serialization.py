"""Pruned models on disk: safetensors weights + a JSON shape spec, loaded without pickle."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file
from structure_testing import random_mask

from decayprune.models import create
from decayprune.structure import StructureSet, compact, load_pruned, read_spec, save_pruned

ARCH = {"name": "resnet20", "kwargs": {"num_classes": 7, "in_channels": 3}}


def _compacted_resnet20() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = create("resnet20", num_classes=7, in_channels=3)
    x = torch.randn(2, 3, 16, 16)
    # A few training-mode passes give BN non-trivial running statistics (they are saved too).
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, 16, 16))
    model.eval()
    s = StructureSet(model, x[:1])
    s.set_mask(random_mask(s, 0.4, seed=0))
    s.zero_pruned_()
    compact(s)
    return model, x


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, torch.Tensor, Path]:
    model, x = _compacted_resnet20()
    base = tmp_path_factory.mktemp("pruned") / "model"
    weights, spec = save_pruned(model, base, arch=ARCH)
    assert weights == base.with_suffix(".safetensors") and spec == base.with_suffix(".json")
    return model, x, base


def _forbid_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("pickle must not be used to load a pruned model")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_round_trip_rebuilds_from_arch(saved, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x, base = saved
    _forbid_pickle(monkeypatch)
    loaded = load_pruned(base).eval()
    assert {n: p.shape for n, p in loaded.named_parameters()} == {n: p.shape for n, p in model.named_parameters()}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            other = loaded.get_submodule(name)
            assert (other.in_channels, other.out_channels) == (module.in_channels, module.out_channels)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # Loading again with the extension given works the same.
    again = load_pruned(base.with_suffix(".safetensors")).eval()
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_round_trip_with_given_model(saved) -> None:
    model, x, base = saved
    loaded = load_pruned(base, create("resnet20", num_classes=7)).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_weights_file_is_plain_safetensors(saved) -> None:
    model, _x, base = saved
    tensors = load_file(str(base.with_suffix(".safetensors")))
    state = model.state_dict()
    assert set(tensors) == set(state)
    for key, value in state.items():
        assert torch.equal(tensors[key], value), key
    spec = json.loads(base.with_suffix(".json").read_text())
    assert spec["arch"] == ARCH
    assert spec["tensors"]["conv1.weight"] == list(state["conv1.weight"].shape)


def test_no_temp_files_left(saved) -> None:
    _model, _x, base = saved
    assert sorted(p.name for p in base.parent.iterdir()) == ["model.json", "model.safetensors"]


def _write_spec(base: Path, tmp_path: Path, **changes) -> Path:
    target = tmp_path / "bad"
    spec = json.loads(base.with_suffix(".json").read_text())
    spec.update(changes)
    target.with_suffix(".json").write_text(json.dumps(spec))
    target.with_suffix(".safetensors").write_bytes(base.with_suffix(".safetensors").read_bytes())
    return target


def test_wrong_format_is_refused(saved, tmp_path: Path) -> None:
    _model, _x, base = saved
    bad = _write_spec(base, tmp_path, format="something.else")
    with pytest.raises(ValueError, match="format"):
        load_pruned(bad)
    with pytest.raises(ValueError, match="format"):
        read_spec(bad)


def test_wrong_version_is_refused(saved, tmp_path: Path) -> None:
    _model, _x, base = saved
    with pytest.raises(ValueError, match="version"):
        load_pruned(_write_spec(base, tmp_path, version=999))


def test_missing_arch_needs_a_model(saved, tmp_path: Path) -> None:
    _model, _x, base = saved
    with pytest.raises(ValueError, match="arch"):
        load_pruned(_write_spec(base, tmp_path, arch=None))


def test_spec_for_another_model_is_refused(saved) -> None:
    _model, _x, base = saved
    with pytest.raises(ValueError):
        load_pruned(base, create("small_cnn"))


def test_missing_spec_is_a_weights_error(tmp_path: Path) -> None:
    from decayprune.errors import WeightsError

    with pytest.raises(WeightsError, match="spec"):
        load_pruned(tmp_path / "absent")


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("mobilenetv2_cifar", {"width": 0.5}, (2, 3, 32, 32)),  # depthwise: `groups` shrinks too
        ("concat_cnn", {}, (2, 3, 16, 16)),
        ("mlp", {}, (2, 3, 8, 8)),
    ],
)
def test_round_trip_other_architectures(name: str, kwargs: dict, shape: tuple, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create(name, num_classes=10, **kwargs).eval()
    x = torch.randn(*shape)
    s = StructureSet(model, x[:1])
    s.set_mask(random_mask(s, 0.4, seed=1))
    s.zero_pruned_()
    compact(s)
    save_pruned(model, tmp_path / "m", arch={"name": name, "kwargs": {"num_classes": 10, **kwargs}})
    loaded = load_pruned(tmp_path / "m").eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
