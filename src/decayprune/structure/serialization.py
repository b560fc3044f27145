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
from .heads import HEAD_ATTRS
from .mha_module import PrunedMultiheadAttention

SPEC_VERSION = 1
_SHAPE_ATTRS = (
    "in_channels",
    "out_channels",
    "groups",
    "in_features",
    "out_features",
    "num_features",
    "num_channels",
    "num_groups",
    "normalized_shape",
    "embedding_dim",
    "num_parameters",
    "nf",
    "nx",
)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


class SpecError(WeightsError):
    """A pruned-model spec that is malformed or does not fit the model; the message names file and key."""


def allowed_attrs(module: nn.Module) -> tuple[str, ...]:
    """The shape attributes a spec may set on ``module`` (compaction changes only these).

    Example:
        >>> allowed_attrs(nn.GroupNorm(2, 4))
        ('num_channels', 'num_groups')
    """
    if isinstance(module, _CONVS):
        return ("in_channels", "out_channels", "groups")
    if isinstance(module, nn.Linear):
        return ("in_features", "out_features")
    if isinstance(module, _BNS):
        return ("num_features",)
    if isinstance(module, nn.GroupNorm):
        return ("num_channels", "num_groups")
    if isinstance(module, nn.LayerNorm):
        return ("normalized_shape",)
    if isinstance(module, nn.Embedding):
        return ("embedding_dim",)
    if isinstance(module, nn.PReLU):
        return ("num_parameters",)
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return ("nf", "nx")
    if isinstance(getattr(module, "head_dim", getattr(module, "attention_head_size", None)), int):
        return tuple(a for a in HEAD_ATTRS if isinstance(getattr(module, a, None), int))  # attention heads
    return ()


def _expected_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """Parameter shapes implied by a module's shape attributes (only the ones they fix)."""
    out: dict[str, tuple[int, ...]] = {}
    if isinstance(module, _CONVS):
        k = tuple(int(v) for v in module.kernel_size)
        cin, cout, groups = int(module.in_channels), int(module.out_channels), int(module.groups)
        out["weight"] = ((cin, cout // groups) if module.transposed else (cout, cin // groups)) + k
        out["bias"] = (cout,)
    elif isinstance(module, nn.Linear):
        out["weight"] = (int(module.out_features), int(module.in_features))
        out["bias"] = (int(module.out_features),)
    elif isinstance(module, _BNS):
        for key in ("weight", "bias", "running_mean", "running_var"):
            out[key] = (module.num_features,)
    elif isinstance(module, nn.GroupNorm):
        out["weight"] = out["bias"] = (module.num_channels,)
    elif isinstance(module, nn.LayerNorm):
        out["weight"] = out["bias"] = tuple(module.normalized_shape)
    elif isinstance(module, nn.PReLU):
        out["weight"] = (module.num_parameters,)
    elif type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "nx"):
        out["weight"] = (int(module.nx), int(module.nf))  # type: ignore[arg-type]
        out["bias"] = (int(module.nf),)  # type: ignore[arg-type]
    return out


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
        attrs = {a: _jsonable(getattr(module, a)) for a in allowed_attrs(module) if hasattr(module, a)}
        if attrs:
            modules[name] = attrs
    tensors = {k: list(v.shape) for k, v in model.state_dict().items()}
    spec: dict[str, Any] = {
        "format": "decayprune.pruned",
        "version": SPEC_VERSION,
        "arch": arch,
        "modules": modules,
        "tensors": tensors,
    }
    replaced = {n: _REPLACEMENT for n, m in model.named_modules() if isinstance(m, PrunedMultiheadAttention)}
    if replaced:  # nn.MultiheadAttention layers that lost heads: rebuilt as PrunedMultiheadAttention
        spec["replaced"] = replaced
    return spec


_REPLACEMENT = "PrunedMultiheadAttention"


def _replace_modules(model: nn.Module, spec: dict[str, Any], source: str) -> None:
    """Turn each ``nn.MultiheadAttention`` the spec names under ``replaced`` into a full-width
    :class:`PrunedMultiheadAttention` (its shapes are then set like any other module's)."""
    for name in spec.get("replaced", {}):
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise SpecError(f"{source}: replaced.{name}: the model has no module '{name}'") from None
        if isinstance(module, PrunedMultiheadAttention):
            continue
        if not isinstance(module, nn.MultiheadAttention) or not name:
            raise SpecError(
                f"{source}: replaced.{name}: expected an nn.MultiheadAttention, got {type(module).__name__}"
            )
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, PrunedMultiheadAttention.from_mha(module))


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
    """Read and validate the layout of a spec JSON file (:class:`SpecError` names file and key)."""
    spec_path = Path(path)
    spec_path = spec_path.with_suffix(".json") if spec_path.suffix != ".json" else spec_path
    if not spec_path.is_file():
        raise WeightsError(f"pruned-model spec '{spec_path}' not found (expected next to the .safetensors file)")
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"'{spec_path}' is not valid JSON: {exc}") from None
    if not isinstance(spec, dict) or spec.get("format") != "decayprune.pruned":
        got = spec.get("format") if isinstance(spec, dict) else type(spec).__name__
        raise SpecError(f"'{spec_path}' is not a decayprune pruned-model spec (format={got!r})")
    if spec.get("version") != SPEC_VERSION:
        raise SpecError(f"'{spec_path}' has spec version {spec.get('version')!r}; this decayprune reads {SPEC_VERSION}")
    _check_layout(spec, str(spec_path))
    spec["_source"] = str(spec_path)
    return spec


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


def _check_layout(spec: dict[str, Any], source: str) -> None:
    modules, tensors = spec.get("modules"), spec.get("tensors")
    if not isinstance(modules, dict):
        raise SpecError(f"{source}: key 'modules' must be an object of module name -> attributes")
    if not isinstance(tensors, dict):
        raise SpecError(f"{source}: key 'tensors' must be an object of tensor name -> shape")
    for name, attrs in modules.items():
        if not isinstance(attrs, dict):
            raise SpecError(f"{source}: modules.{name} must be an object of attribute -> value")
        for attr, value in attrs.items():
            ok = _is_shape(value) if isinstance(value, list) else isinstance(value, int) and not isinstance(value, bool)
            if not ok or (isinstance(value, int) and value < 1):
                raise SpecError(
                    f"{source}: modules.{name}.{attr} must be a positive integer (or a list of them), got {value!r}"
                )
    replaced = spec.get("replaced", {})
    if not isinstance(replaced, dict) or any(v != _REPLACEMENT for v in replaced.values()):
        raise SpecError(f"{source}: key 'replaced' must map module names to {_REPLACEMENT!r}, got {replaced!r}")
    for key, shape in tensors.items():
        if not _is_shape(shape):
            raise SpecError(f"{source}: tensors.{key} must be a list of non-negative integers, got {shape!r}")


def apply_spec(model: nn.Module, spec: dict[str, Any]) -> nn.Module:
    """Shrink a freshly built ``model`` in place to the shapes in ``spec`` (values uninitialised).

    Only shape attributes are set (:func:`allowed_attrs` per module type: never ``stride``,
    ``eps`` ...), and every tensor's shape must agree with its module's attributes.

    Raises:
        SpecError: a module, attribute or tensor the model does not have or allow, or shapes
            that disagree; the message names the file and the key.
    """
    source = spec.get("_source", "spec")
    _check_layout(spec, source)
    _replace_modules(model, spec, source)
    modules = dict(model.named_modules())
    for name, attrs in spec["modules"].items():
        if name not in modules:
            raise SpecError(f"{source}: modules.{name}: the model has no module '{name}'")
        module = modules[name]
        allowed = allowed_attrs(module)
        for attr, value in attrs.items():
            if attr not in allowed:
                raise SpecError(
                    f"{source}: modules.{name}.{attr}: '{attr}' is not a shape attribute a pruned "
                    f"{type(module).__name__} may change; allowed: {list(allowed) or 'none'}"
                )
            setattr(module, attr, tuple(value) if isinstance(value, list) else value)
    current = model.state_dict()
    extra, missing = sorted(set(spec["tensors"]) - set(current)), sorted(set(current) - set(spec["tensors"]))
    if extra or missing:
        raise SpecError(
            f"{source}: tensors: the spec and the model disagree (only in the spec: {extra[:5]}, "
            f"only in the model: {missing[:5]})"
        )
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
    for name, module in modules.items():
        if isinstance(module, nn.GroupNorm) and module.num_channels % module.num_groups:
            raise SpecError(
                f"{source}: modules.{name}: {module.num_channels} channels do not split into {module.num_groups} groups"
            )
        for attr, expected in _expected_shapes(module).items():
            key = f"{name}.{attr}" if name else attr
            if key in spec["tensors"] and tuple(spec["tensors"][key]) != expected:
                raise SpecError(
                    f"{source}: tensors.{key}: shape {spec['tensors'][key]} does not match the module's "
                    f"attributes in the spec (expected {list(expected)})"
                )
    return model


def load_pruned(
    path: str | os.PathLike, model: nn.Module | None = None, device: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild a pruned model from ``<path>.safetensors`` + ``<path>.json`` without unpickling.

    Args:
        path: Path with or without extension.
        model: A freshly built, unpruned instance of the architecture. When ``None`` the spec's
            ``arch`` entry is used with :func:`decayprune.models.resolve_model` (a registered name, a
            factory path or a library spec such as ``transformers:GPT2LMHeadModel``).
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
            raise SpecError(f"'{base}.json' has no 'arch' entry; pass the unpruned model to load_pruned()")
        from ..models import resolve_model

        try:
            model = resolve_model(arch["name"], **arch.get("kwargs", {}))
        except (KeyError, TypeError, ValueError) as exc:  # UserError is a ValueError
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
