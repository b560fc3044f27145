"""Masked models on disk, pickle-free: one ``.safetensors`` file, dense weights plus masks.

Format (documented choice: *dense + mask*): every tensor of the model's ``state_dict`` under its
own name (pruned weights are stored as exact zeros), plus one ``uint8`` keep mask per masked
layer under ``__mask__.<layer>`` (1: kept), and metadata ``{"format": "decayprune.masks/1",
"layers": <JSON list of layer names>}``. Loading refuses a file whose masked weights are not zero.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from ..files import save_safetensors_atomic
from .masks import ElementMasks

__all__ = ["FORMAT", "load_masked", "save_masked"]

FORMAT = "decayprune.masks/1"
_PREFIX = "__mask__."


def save_masked(path: str | os.PathLike[str], model: nn.Module, units: ElementMasks) -> None:
    """Write ``model``'s weights and ``units``' masks to ``path`` atomically.

    Example:
        >>> import tempfile, pathlib
        >>> net = nn.Linear(4, 2)
        >>> m = ElementMasks(net); m.set_pruned([0, 5]); m.zero_pruned_()
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "net.safetensors"
        >>> save_masked(p, net, m)
        >>> load_masked(p, nn.Linear(4, 2)).pruned.nonzero().flatten().tolist()
        [0, 5]
    """
    units.zero_pruned_(grads=False)
    tensors = dict(model.state_dict())
    for name, keep in units.masks().items():
        tensors[_PREFIX + name] = keep.to(torch.uint8)
    save_safetensors_atomic(path, tensors, {"format": FORMAT, "layers": json.dumps(units.names)})


def load_masked(path: str | os.PathLike[str], model: nn.Module) -> ElementMasks:
    """Load weights into ``model`` (same architecture) and return its :class:`ElementMasks`."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file (format {metadata.get('format')!r})")
    tensors = load_file(str(path))
    masks = {k[len(_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_PREFIX)}
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(_PREFIX)})
    units = ElementMasks(model, layers=json.loads(metadata["layers"]))
    keep = torch.cat([masks[name].reshape(-1).bool() for name in units.names])
    units.set_mask(~keep)
    values = units.per_weight(units.weights)
    if torch.any(values[units.pruned.to(values.device)] != 0):
        raise ValueError(f"{path}: masked weights are not zero; the file is inconsistent")
    return units
