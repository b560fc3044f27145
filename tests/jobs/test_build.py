"""Building the pieces of a run from its config; broken dataset files give one clear DataError."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from decayprune.config import ModelConfig, load_config
from decayprune.errors import DataError, RunFolderError, WeightsError
from decayprune.jobs import build_model, load_splits, load_weights
from decayprune.jobs.build import reuse_phase_weights, save_weights
from decayprune.models import create


def test_build_model_seed_sets_the_initial_weights() -> None:
    def weights(seed: int) -> torch.Tensor:
        model = build_model(ModelConfig(name="small_cnn"), num_classes=10, in_channels=1, image_size=(8, 8), seed=seed)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(3), weights(3))
    assert not torch.equal(weights(3), weights(4))


def test_a_phase_is_reused_only_for_the_hash_it_was_made_for(tmp_path: Path) -> None:
    weights, meta = tmp_path / "phase.safetensors", tmp_path / "phase.json"
    target = create("small_cnn", num_classes=10, in_channels=1)
    assert reuse_phase_weights(target, weights, meta, "abc", "made for other settings") is None
    saved = create("small_cnn", num_classes=10, in_channels=1)
    torch.nn.init.constant_(saved.features[0].weight, 0.25)
    save_weights(saved, weights)
    with pytest.raises(RunFolderError, match=r"was made for other settings \(or has no phase.json\)"):
        reuse_phase_weights(target, weights, meta, "abc", "made for other settings")
    meta.write_text(json.dumps({"config_hash": "xyz", "epochs": 3, "time_s": 1.5}))
    with pytest.raises(RunFolderError, match="--overwrite"):
        reuse_phase_weights(target, weights, meta, "abc", "made for other settings")
    meta.write_text(json.dumps({"config_hash": "abc", "epochs": 3, "time_s": 1.5}))
    assert reuse_phase_weights(target, weights, meta, "abc", "made for other settings") == {"epochs": 3, "time_s": 1.5}
    assert torch.equal(target.features[0].weight, saved.features[0].weight)


def test_load_weights_errors(tmp_path: Path) -> None:
    model = create("small_cnn", num_classes=10, in_channels=1)
    with pytest.raises(WeightsError, match="does not exist"):
        load_weights(model, tmp_path / "absent.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(WeightsError, match="cannot read weights"):
        load_weights(model, bad)


def _cifar_folder(tmp_path: Path, payload: bytes) -> Path:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(payload)
    return tmp_path


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (pickle.dumps({b"data": b"x" * 100})[:20], "cannot load dataset 'cifar10'"),
        (pickle.dumps(_Payload()), "refused global"),
    ],
    ids=["truncated", "pickle-payload"],
)
def test_broken_cifar_batches_are_data_errors(tmp_path: Path, payload: bytes, expected: str) -> None:
    cfg = load_config(None, values={"data": {"name": "cifar10", "data_dir": str(_cifar_folder(tmp_path, payload))}})
    with pytest.raises(DataError, match=expected):
        load_splits(cfg)


def test_a_corrupt_image_is_a_data_error(tmp_path: Path) -> None:
    for split in ("train", "test"):
        (tmp_path / split / "cat").mkdir(parents=True)
        (tmp_path / split / "cat" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    cfg = load_config(None, values={"data": {"name": "imagefolder", "data_dir": str(tmp_path)}})
    with pytest.raises(DataError, match="cannot load dataset 'imagefolder'"):
        load_splits(cfg)
