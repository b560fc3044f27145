"""A pruned Hugging Face model as a ``save_pretrained`` folder, where its config can say its widths.

A transformers config holds one width per kind (``intermediate_size``, ``num_attention_heads``,
``num_key_value_heads``), so a pruned model is expressible only when every layer kept the same
width, and only when the modeling code reads the changed field (BERT and GPT-2 derive the head
size from ``hidden_size / num_attention_heads``, so fewer heads cannot be written in their
config). :func:`pruned_hf_config` derives the updated config and *proves* it: a model built
from it (on the meta device, no memory) must have exactly the pruned model's parameter shapes;
otherwise it says why, and the model is saved with :func:`~decayprune.structure.save_pruned`
(safetensors + spec) instead. decayprune never imports transformers itself: the model brings it.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .heads import find_attention

__all__ = ["pruned_hf_config", "save_hf_pretrained"]

_WIDTH_FIELDS = ("intermediate_size", "n_inner", "ffn_dim", "hidden_dim")


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def _build(model: nn.Module, config: Any) -> nn.Module:
    with torch.device("meta"):
        return type(model)(config)


def _uniform(values: list[int], what: str) -> tuple[int | None, str | None]:
    kept = sorted(set(values))
    if len(kept) > 1:
        return None, f"layers keep different {what} ({', '.join(map(str, kept))}); the config holds one"
    return (kept[0] if kept else None), None


def pruned_hf_config(model: nn.Module) -> tuple[Any | None, str | None]:
    """``(config, None)`` describing the pruned ``model``'s widths, or ``(None, why not)``.

    Example:
        >>> import transformers
        >>> cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        ...     num_attention_heads=4, num_key_value_heads=2, vocab_size=16)
        >>> config, reason = pruned_hf_config(transformers.LlamaModel(cfg))
        >>> (config.intermediate_size, config.num_key_value_heads, reason)
        (64, 2, None)
    """
    original = getattr(model, "config", None)
    if original is None or not hasattr(original, "to_dict"):
        return None, f"{type(model).__name__} has no Hugging Face config"
    config = copy.deepcopy(original)
    layouts = find_attention(model)
    heads, reason = _uniform([h.num_heads for h in layouts], "numbers of attention heads")
    if reason is None:
        kv_heads, reason = _uniform([h.num_kv_heads for h in layouts], "numbers of key/value heads")
    if reason is not None:
        return None, reason
    if heads is not None:
        config.num_attention_heads = heads
        if hasattr(config, "num_key_value_heads"):
            config.num_key_value_heads = kv_heads
        config.head_dim = layouts[0].head_dim
    mismatch = _changed_dims(model, original)
    for field in _WIDTH_FIELDS:
        width = getattr(original, field, None)
        if isinstance(width, int) and width in mismatch:
            value, reason = _uniform(mismatch[width], f"{field} widths")
            if reason is not None:
                return None, reason
            setattr(config, field, value)
    try:
        built = _shapes(_build(model, config))
    except Exception as exc:  # a config the model class refuses
        return None, f"{type(model).__name__} cannot be built from the updated config ({type(exc).__name__}: {exc})"
    pruned = _shapes(model)
    for name, shape in pruned.items():
        if built.get(name) != shape:
            return None, (
                f"the config cannot express the pruned widths: '{name}' is {list(shape)}, a "
                f"{type(model).__name__} built from the updated config has {list(built.get(name, ()))}"
            )
    return config, None


def _changed_dims(model: nn.Module, config: Any) -> dict[int, list[int]]:
    """``{original size: [pruned sizes]}`` over every parameter dimension that shrank."""
    fresh = _shapes(_build(model, config))
    out: dict[int, list[int]] = {}
    for name, shape in _shapes(model).items():
        for before, after in zip(fresh.get(name, shape), shape, strict=False):
            if before != after:
                out.setdefault(before, []).append(after)
    return out


def save_hf_pretrained(model: nn.Module, folder: str | os.PathLike) -> Path:
    """``model.save_pretrained(folder)`` with a config updated to its pruned widths.

    The model's own ``config`` is replaced by the updated one, so ``type(model).from_pretrained(folder)``
    rebuilds it. Raises :class:`~decayprune.errors.UserError` (naming the reason) when the config
    cannot express the pruned model; save it with ``save_pruned`` then.
    """
    config, reason = pruned_hf_config(model)
    if config is None:
        raise UserError(
            f"cannot save {type(model).__name__} as a Hugging Face folder: {reason}; "
            "use decayprune.save_pruned(model, path) and load_pruned(path, fresh_model) instead"
        )
    model.config = config
    for module in model.modules():
        if module is not model and getattr(module, "config", None) is not None and hasattr(module.config, "to_dict"):
            module.config = config
    model.save_pretrained(str(folder))  # type: ignore[operator]
    return Path(folder)
