"""Save and load pruned models without pickle: safetensors weights + a JSON shape spec.

The spec records, for every module whose shape-defining attributes differ from a freshly
built model, those attributes (channel counts, groups, normalized shape), and the shape of
every parameter and buffer. Loading builds the original architecture, shrinks it to the
spec, then loads the tensors with ``safetensors`` (which cannot run code).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

SPEC_VERSION = 1
_SHAPE_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
                "num_channels", "normalized_shape", "embedding_dim", "num_parameters")


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    return {"format": "decayprune.pruned", "version": SPEC_VERSION, "arch": arch, "modules": modules, "tensors": tensors}


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def save_pruned(model: nn.Module, path: str | os.PathLike, arch: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``<path>.safetensors`` and ``<path>.json`` atomically.

    Args:
        model: The model to save (compacted or not).
        path: Path without extension (an extension, if given, is replaced).
        arch: Rebuild recipe stored in the spec (see :func:`model_spec`).

    Returns:
        The two paths written.
    """
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".safetensors", ".json") else base
    weights, spec_path = base.with_suffix(".safetensors"), base.with_suffix(".json")
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    _atomic_write(weights, lambda tmp: save_file(state, tmp))
    spec = model_spec(model, arch)
    _atomic_write(spec_path, lambda tmp: Path(tmp).write_text(json.dumps(spec, indent=1)))
    return weights, spec_path


def read_spec(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a spec JSON file."""
    spec_path = Path(path)
    spec_path = spec_path.with_suffix(".json") if spec_path.suffix != ".json" else spec_path
    if not spec_path.is_file():
        raise FileNotFoundError(f"pruned-model spec '{spec_path}' not found (expected next to the .safetensors file)")
    spec = json.loads(spec_path.read_text())
    if spec.get("format") != "decayprune.pruned":
        raise ValueError(f"'{spec_path}' is not a decayprune pruned-model spec (format={spec.get('format')!r})")
    if spec.get("version") != SPEC_VERSION:
        raise ValueError(f"'{spec_path}' has spec version {spec.get('version')!r}; this decayprune reads {SPEC_VERSION}")
    return spec


def apply_spec(model: nn.Module, spec: dict[str, Any]) -> nn.Module:
    """Shrink a freshly built ``model`` in place to the shapes in ``spec`` (values uninitialised)."""
    modules = dict(model.named_modules())
    for name, attrs in spec["modules"].items():
        if name not in modules:
            raise ValueError(f"spec names module '{name}' that the model does not have")
        for attr, value in attrs.items():
            setattr(modules[name], attr, tuple(value) if isinstance(value, list) else value)
    current = model.state_dict()
    missing = set(spec["tensors"]) ^ set(current)
    if missing:
        raise ValueError(f"spec and model disagree on tensors: {sorted(missing)[:5]}")
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


def load_pruned(path: str | os.PathLike, model: nn.Module | None = None, device: str | torch.device = "cpu") -> nn.Module:
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
            raise ValueError(f"'{base}.json' has no 'arch' entry; pass the unpruned model to load_pruned()")
        from ..models import create

        model = create(arch["name"], **arch.get("kwargs", {}))
    apply_spec(model, spec)
    state = load_file(str(base.with_suffix(".safetensors")), device=str(device))
    model.load_state_dict(state, strict=True)
    return model.to(device)
