"""Save and load pruned models without pickle: safetensors weights + a JSON shape spec.

The spec records, for every module whose shape-defining attributes differ from a freshly
built model, those attributes (channel counts, groups, normalized shape), and the shape of
every parameter and buffer. Loading builds the original architecture, shrinks it to the
spec, then loads the tensors with ``safetensors`` (which cannot run code).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import WeightsError
from ..files import save_safetensors_atomic, write_json_atomic

SPEC_VERSION = 1
_SHAPE_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
                "num_channels", "normalized_shape", "embedding_dim", "num_parameters")


def model_spec(model: nn.Module, arch: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-able shape spec of ``model``.

    Args:
        model: A (possibly compacted) model.
        arch: How to rebuild the unpruned architecture, e.g.
            ``{"name": "resnet56", "kwargs": {"num_classes": 10}}`` (used by :func:`load_pruned`).

    Example:
        >>> spec = model_spec(nn.Linear(4, 2))
        >>> spec["tensors"]["weight"]
        [2, 4]
    """
    modules = {}
    for name, module in model.named_modules():
        attrs = {a: _jsonable(getattr(module, a)) for a in _SHAPE_ATTRS if hasattr(module, a)}
        if attrs:
            modules[name] = attrs
    tensors = {k: list(v.shape) for k, v in model.state_dict().items()}
    return {"format": "decayprune.pruned", "version": SPEC_VERSION, "arch": arch, "modules": modules,
            "tensors": tensors}


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def save_pruned(model: nn.Module, path: str | os.PathLike, arch: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``<path>.safetensors`` and ``<path>.json`` atomically.

    Args:
        model: The model to save (compacted or not).
        path: Path without extension (an extension, if given, is replaced).
        arch: Rebuild recipe stored in the spec (see :func:`model_spec`).

    Returns:
        The two paths written (each written atomically through :mod:`decayprune.files`).
    """
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".safetensors", ".json") else base
    weights, spec_path = base.with_suffix(".safetensors"), base.with_suffix(".json")
    save_safetensors_atomic(weights, model.state_dict())
    write_json_atomic(spec_path, model_spec(model, arch))
    return weights, spec_path


def read_spec(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a spec JSON file.

    Raises:
        WeightsError: The file is missing, not JSON, or not a decayprune spec of this version.
    """
    spec_path = Path(path)
    spec_path = spec_path.with_suffix(".json") if spec_path.suffix != ".json" else spec_path
    if not spec_path.is_file():
        raise WeightsError(f"pruned-model spec '{spec_path}' not found (expected next to the .safetensors file)")
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read pruned-model spec '{spec_path}': {exc}") from None
    if not isinstance(spec, dict) or spec.get("format") != "decayprune.pruned":
        found = spec.get("format") if isinstance(spec, dict) else type(spec).__name__
        raise WeightsError(f"'{spec_path}' is not a decayprune pruned-model spec (format={found!r})")
    if spec.get("version") != SPEC_VERSION:
        raise WeightsError(
            f"'{spec_path}' has spec version {spec.get('version')!r}; this decayprune reads {SPEC_VERSION}"
        )
    for key in ("modules", "tensors"):
        if not isinstance(spec.get(key), dict):
            raise WeightsError(f"'{spec_path}' has no valid {key!r} entry")
    return spec


def apply_spec(model: nn.Module, spec: dict[str, Any]) -> nn.Module:
    """Shrink a freshly built ``model`` in place to the shapes in ``spec`` (values uninitialised)."""
    modules = dict(model.named_modules())
    for name, attrs in spec["modules"].items():
        if name not in modules:
            raise WeightsError(f"spec names module '{name}' that the model does not have (another architecture?)")
        for attr, value in attrs.items():
            setattr(modules[name], attr, tuple(value) if isinstance(value, list) else value)
    current = model.state_dict()
    missing = set(spec["tensors"]) ^ set(current)
    if missing:
        raise WeightsError(f"spec and model disagree on tensors: {sorted(missing)[:5]} (another architecture?)")
    for key, shape in spec["tensors"].items():
        if list(current[key].shape) == shape:
            continue
        owner_name, _, attr = key.rpartition(".")
        owner = modules[owner_name]
        old = getattr(owner, attr)
        fresh = torch.empty(shape, dtype=old.dtype, device=old.device)
        if isinstance(old, nn.Parameter):
            setattr(owner, attr, nn.Parameter(fresh, requires_grad=old.requires_grad))
        else:
            owner.register_buffer(attr, fresh)
    return model


def load_pruned(
    path: str | os.PathLike, model: nn.Module | None = None, device: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild a pruned model from ``<path>.safetensors`` + ``<path>.json`` without unpickling.

    Args:
        path: Path with or without extension.
        model: A freshly built, unpruned instance of the architecture. When ``None`` the spec's
            ``arch`` entry is used with :func:`decayprune.models.create`.
        device: Where to load the tensors.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp(); _ = save_pruned(nn.Linear(4, 2), os.path.join(d, "m"))
        >>> load_pruned(os.path.join(d, "m"), nn.Linear(4, 2)).weight.shape
        torch.Size([2, 4])
    """
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".safetensors", ".json") else base
    spec = read_spec(base.with_suffix(".json"))
    if model is None:
        arch = spec.get("arch")
        if not arch:
            raise WeightsError(f"'{base}.json' has no 'arch' entry; pass the unpruned model to load_pruned()")
        from ..models import create

        try:
            model = create(arch["name"], **arch.get("kwargs", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"'{base}.json': cannot rebuild its architecture {arch!r}: {exc}") from None
    apply_spec(model, spec)
    weights = base.with_suffix(".safetensors")
    if not weights.is_file():
        raise WeightsError(f"weights file '{weights}' does not exist (expected next to '{base}.json')")
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"cannot read weights '{weights}' as safetensors: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"weights '{weights}' do not fit the spec '{base}.json': {exc}") from None
    return model.to(device)
