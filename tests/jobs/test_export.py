"""Loading model files without their run, and exporting them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from decayprune.errors import ExportError, WeightsError
from decayprune.jobs import LoadedModel, export_model, find_model_files, load_model_files
from decayprune.models import create
from decayprune.structure import save_pruned

ARCH = {"name": "mlp", "kwargs": {"num_classes": 4, "in_channels": 1, "image_size": [8, 8]}, "input_shape": [1, 8, 8]}


@pytest.fixture
def model_files(tmp_path: Path) -> Path:
    model = create("mlp", num_classes=4, in_channels=1, image_size=(8, 8)).eval()
    save_pruned(model, tmp_path / "run" / "model", arch=ARCH)
    return tmp_path / "run"


def test_find_and_load(model_files: Path) -> None:
    assert find_model_files(model_files) == model_files / "model.safetensors"
    assert find_model_files(model_files / "model.json") == model_files / "model.safetensors"
    loaded = load_model_files(model_files)
    assert loaded.input_shape == (1, 8, 8) and loaded.example_input(3).shape == (3, 1, 8, 8)
    assert not loaded.model.training


def test_load_errors(tmp_path: Path, model_files: Path) -> None:
    with pytest.raises(WeightsError, match="holds no model files"):
        load_model_files(tmp_path)
    with pytest.raises(WeightsError, match="not a model file with a .json spec"):
        load_model_files(tmp_path / "x.safetensors")
    (model_files / "model.json").write_text("{not json")
    with pytest.raises(WeightsError, match="is not valid JSON"):
        load_model_files(model_files)


def test_export_round_trips_and_checks_formats(model_files: Path, tmp_path: Path) -> None:
    loaded = load_model_files(model_files)
    written = export_model(loaded, tmp_path / "out", formats=["safetensors", "pt2"])
    assert sorted(p.name for p in written) == ["model.json", "model.pt2", "model.safetensors"]
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(torch.export.load(str(tmp_path / "out" / "model.pt2")).module()(x), loaded.model(x))
    with pytest.raises(ExportError, match="allowed: safetensors, pt2, onnx"):
        export_model(loaded, tmp_path / "out", formats=["tflite"])
    no_shape = LoadedModel(loaded.model, {"name": "mlp"}, loaded.source)
    with pytest.raises(WeightsError, match="records no input_shape"):
        export_model(no_shape, tmp_path / "o2", formats=["pt2"])


def test_onnx_without_onnx_is_a_clear_error(model_files: Path, tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("onnx") is not None:
        pytest.skip("onnx is installed")
    with pytest.raises(ExportError, match="needs the 'onnx' package"):
        export_model(load_model_files(model_files), tmp_path / "o", formats=["onnx"])


def test_written_files_follow_the_umask(model_files: Path, tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        written = export_model(load_model_files(model_files), tmp_path / "perm", formats=["safetensors", "pt2"])
    finally:
        os.umask(old)
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o644, path
