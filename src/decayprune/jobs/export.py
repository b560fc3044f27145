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
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import ExportError, WeightsError
from ..files import write_bytes_atomic
from ..structure import load_pruned, save_pruned
from ..structure.serialization import read_spec

__all__ = ["EXPORT_FORMATS", "ExampleInputs", "LoadedModel", "export_model", "find_model_files", "load_model_files"]

#: What a model is called with: one tensor, a tuple of positional tensors, or a dict of keyword tensors.
ExampleInputs = torch.Tensor | tuple[torch.Tensor, ...] | Mapping[str, torch.Tensor]

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
        """``(C, H, W)`` of one input (``(seq_len,)`` of a token model), from the spec."""
        shape = self.arch.get("input_shape")
        if not shape:
            raise WeightsError(f"'{self.source.with_suffix('.json')}' records no input_shape; give --input-shape")
        return tuple(int(v) for v in shape)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A zero batch of ``batch_size`` inputs (``int64`` token ids when the spec says ``input_dtype: int64``)."""
        dtype = torch.int64 if self.arch.get("input_dtype") == "int64" else torch.float32
        return torch.zeros(batch_size, *self.input_shape, dtype=dtype)


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


def _call_args(model: nn.Module, example: ExampleInputs) -> tuple[tuple[Any, ...], dict[str, Any], list[str]]:
    """Positional args, keyword args and the names of all inputs (from ``forward``'s signature)."""
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    if isinstance(example, torch.Tensor):
        args, kwargs = (example,), {}
    elif isinstance(example, Mapping):
        args, kwargs = (), dict(example)
    elif isinstance(example, (tuple, list)):
        args, kwargs = tuple(example), {}
    else:
        raise ExportError(
            f"example inputs must be a tensor, a tuple or a dict of tensors, got {type(example).__name__}"
        )
    params = [n for n, p in inspect.signature(model.forward).parameters.items() if p.kind is not p.VAR_KEYWORD]
    if len(args) > len(params):
        raise ExportError(f"{len(args)} positional example inputs for a forward() taking {len(params)}")
    names = params[: len(args)] if kwargs else ["input"] if len(args) == 1 else params[: len(args)]
    return args, kwargs, names + list(kwargs)


def _export_pt2(model: nn.Module, example: ExampleInputs, path: Path) -> None:
    args, kwargs, _names = _call_args(model, example)
    batch = {0: torch.export.Dim.DYNAMIC}
    if kwargs:
        params = list(inspect.signature(model.forward).parameters)
        dynamic: Any = {**{params[i]: batch for i in range(len(args))}, **{k: batch for k in kwargs}}
    else:
        dynamic = tuple(batch for _ in args)
    program = torch.export.export(model, args, kwargs=kwargs or None, dynamic_shapes=dynamic)
    tmp = path.with_name(f".part.{path.name}")
    try:
        torch.export.save(program, str(tmp))
        write_bytes_atomic(path, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)


def _export_onnx(model: nn.Module, example: ExampleInputs, path: Path) -> None:
    if importlib.util.find_spec("onnx") is None:
        raise ExportError("ONNX export needs the 'onnx' package: pip install 'decayprune[export]'")
    args, kwargs, names = _call_args(model, example)
    with torch.no_grad():
        out = model(*args, **kwargs)
    single = isinstance(out, torch.Tensor) or (isinstance(out, Mapping) and len(out) == 1)
    outputs = ["logits"] if single else None
    axes = {n: {0: "batch"} for n in names + (outputs or [])}
    tmp = path.with_name(f".{path.name}.part")
    try:
        torch.onnx.export(
            model, args, str(tmp), kwargs=kwargs or None, input_names=names, output_names=outputs, dynamic_axes=axes
        )
        write_bytes_atomic(path, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)


def export_model(
    loaded: LoadedModel,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = ("safetensors", "pt2"),
    example_inputs: ExampleInputs | None = None,
) -> list[Path]:
    """Write ``loaded``'s model to ``out_dir`` in each of ``formats`` (see :data:`EXPORT_FORMATS`).

    ``safetensors`` writes ``model.safetensors`` + ``model.json`` (reload with
    :func:`load_model_files`); ``pt2`` a ``torch.export`` program, ``model.pt2`` (load with
    ``torch.export.load``); ``onnx`` ``model.onnx`` (needs ``onnx``). Both have a dynamic batch dimension.
    ``example_inputs`` (batch of 2 or more) is what the model is traced with: a tensor, a tuple of
    positional tensors or a dict of keyword tensors (e.g. ``input_ids`` and ``attention_mask`` of a
    transformers model; ONNX inputs are named after them); default: a zero batch of the spec's input shape.

    Raises:
        ExportError: An unknown format, or the model cannot be traced / exported.
    """
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown or not formats:
        raise ExportError(f"export formats: got {list(formats)}; allowed: {', '.join(EXPORT_FORMATS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--output '{out}' is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)  # pt2/onnx alone write into it too
    model = loaded.model.to("cpu").eval()
    example = example_inputs if example_inputs is not None else loaded.example_input(2)
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
