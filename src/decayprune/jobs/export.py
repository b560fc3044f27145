"""Use a trained or pruned model without its run: load it from its files, export it.

A model file is a ``.safetensors`` state dict plus a ``.json`` shape spec next to it (written by
:func:`decayprune.save_pruned`: ``pruned.*`` of a prune run, ``model.*`` of a train run). Loading
rebuilds the architecture from the spec's ``arch`` entry, shrinks it to the pruned shapes and
loads the tensors; nothing is unpickled.

Example:
    >>> import tempfile, pathlib
    >>> from decayprune.models import create
    >>> from decayprune.structure import save_pruned
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> arch = {"name": "small_cnn", "kwargs": {"num_classes": 10, "in_channels": 1}, "input_shape": [1, 8, 8]}
    >>> _ = save_pruned(create("small_cnn", num_classes=10, in_channels=1), d / "pruned", arch=arch)
    >>> loaded = load_model_files(d)
    >>> loaded.input_shape, sorted(p.name for p in export_model(loaded, d / "out", formats=["safetensors"]))
    ((1, 8, 8), ['model.json', 'model.safetensors'])
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import ExportError, WeightsError
from ..files import write_bytes_atomic
from ..structure import load_pruned, save_pruned
from ..structure.serialization import read_spec

__all__ = ["EXPORT_FORMATS", "LoadedModel", "export_model", "find_model_files", "load_model_files"]

#: Formats :func:`export_model` writes: safetensors + JSON spec, a ``torch.export`` program, ONNX.
EXPORT_FORMATS = ("safetensors", "pt2", "onnx")

_RUN_MODEL_FILES = ("pruned", "model")


@dataclass
class LoadedModel:
    """A model loaded from its files, in eval mode on the CPU.

    Attributes:
        model: The module.
        arch: The spec's rebuild recipe (``name``, ``kwargs``, ``input_shape``).
        source: The weights file it came from.
    """

    model: nn.Module
    arch: dict[str, Any]
    source: Path

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of one input, from the spec."""
        shape = self.arch.get("input_shape")
        if not shape:
            raise WeightsError(f"'{self.source.with_suffix('.json')}' records no input_shape; give --input-shape")
        return tuple(int(v) for v in shape)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A zero batch of ``batch_size`` inputs."""
        return torch.zeros(batch_size, *self.input_shape)


def find_model_files(path: str | Path) -> Path | None:
    """The ``.safetensors`` file with a ``.json`` spec named by ``path`` (a run folder or a file), or None.

    In a run folder the pruned model (``pruned.*``) wins over the trained one (``model.*``).
    """
    path = Path(path)
    if path.is_dir():
        for stem in _RUN_MODEL_FILES:
            if (path / f"{stem}.json").is_file() and (path / f"{stem}.safetensors").is_file():
                return path / f"{stem}.safetensors"
        return None
    if path.suffix in (".safetensors", ".json") and path.with_suffix(".json").is_file():
        return path.with_suffix(".safetensors")
    return None


def load_model_files(path: str | Path) -> LoadedModel:
    """Load the model of a run folder, or of a ``.safetensors`` file with its ``.json`` spec.

    Raises:
        WeightsError: Nothing loadable at ``path`` (the message says what was looked for).
    """
    weights = find_model_files(path)
    if weights is None:
        if Path(path).is_dir():
            raise WeightsError(
                f"'{path}' holds no model files (pruned.safetensors + pruned.json, or model.safetensors + "
                "model.json); is it a finished run folder?"
            )
        raise WeightsError(f"'{path}' is not a model file with a .json spec next to it")
    spec = read_spec(weights.with_suffix(".json"))
    model = load_pruned(weights.with_suffix(""))
    model.eval()
    return LoadedModel(model, dict(spec.get("arch") or {}), weights)


def _export_pt2(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    tmp = path.with_name(f".part.{path.name}")
    try:
        torch.export.save(program, str(tmp))
        write_bytes_atomic(path, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    if importlib.util.find_spec("onnx") is None:
        raise ExportError("ONNX export needs the 'onnx' package: pip install 'decayprune[export]'")
    tmp = path.with_name(f".{path.name}.part")
    try:
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
        write_bytes_atomic(path, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)


def export_model(
    loaded: LoadedModel, out_dir: str | Path, *, formats: Sequence[str] = ("safetensors", "pt2")
) -> list[Path]:
    """Write ``loaded``'s model to ``out_dir`` in each of ``formats`` (see :data:`EXPORT_FORMATS`).

    ``safetensors`` writes ``model.safetensors`` + ``model.json`` (reload with
    :func:`load_model_files`); ``pt2`` a ``torch.export`` program, ``model.pt2`` (load with
    ``torch.export.load``); ``onnx`` ``model.onnx`` (needs ``onnx``). Both have a dynamic batch dimension.

    Raises:
        ExportError: An unknown format, or the model cannot be traced / exported.
    """
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown or not formats:
        raise ExportError(f"export formats: got {list(formats)}; allowed: {', '.join(EXPORT_FORMATS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--output '{out}' is a file, not a folder")
    model = loaded.model.to("cpu").eval()
    example = loaded.example_input(2)
    written: list[Path] = []
    for fmt in formats:
        try:
            if fmt == "safetensors":
                written.extend(save_pruned(model, out / "model", arch=loaded.arch))
            elif fmt == "pt2":
                _export_pt2(model, example, out / "model.pt2")
                written.append(out / "model.pt2")
            else:
                _export_onnx(model, example, out / "model.onnx")
                written.append(out / "model.onnx")
        except ExportError:
            raise
        except Exception as exc:  # tracing failures come in many types; report them as one line
            raise ExportError(f"{fmt} export of '{loaded.source}' failed: {type(exc).__name__}: {exc}") from exc
    return written
