"""Layers from other libraries that torch-pruning does not know, with pruning handlers.

GPT-2 style ``Conv1D`` (``transformers.pytorch_utils.Conv1D``) is a linear layer whose weight
is stored transposed, ``[in, out]``. The handler below lets the dependency graph follow it and
slice it; it is registered only when transformers is already imported (a model that contains
the layer imported it), so decayprune never imports transformers itself.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .graph import BasePruningFunc

__all__ = ["Conv1DPruner", "conv1d_type", "customized_pruners"]


def conv1d_type() -> type[nn.Module] | None:
    """``transformers.pytorch_utils.Conv1D`` when transformers is loaded, else None."""
    module = sys.modules.get("transformers.pytorch_utils")
    return getattr(module, "Conv1D", None)


def _keep(size: int, idxs: Sequence[int]) -> torch.Tensor:
    drop = set(int(i) for i in idxs)
    return torch.tensor([i for i in range(size) if i not in drop], dtype=torch.long)


class Conv1DPruner(BasePruningFunc):
    """Prune the outputs (``weight[:, j]``, ``bias[j]``) or inputs (``weight[i, :]``) of a ``Conv1D``."""

    def prune_out_channels(self, layer: Any, idxs: Sequence[int]) -> nn.Module:
        keep = _keep(layer.weight.shape[1], idxs).to(layer.weight.device)
        layer.weight = nn.Parameter(layer.weight.data.index_select(1, keep).clone())
        if getattr(layer, "bias", None) is not None:
            layer.bias = nn.Parameter(layer.bias.data.index_select(0, keep).clone())
        layer.nf = int(keep.numel())
        return layer

    def prune_in_channels(self, layer: Any, idxs: Sequence[int]) -> nn.Module:
        keep = _keep(layer.weight.shape[0], idxs).to(layer.weight.device)
        layer.weight = nn.Parameter(layer.weight.data.index_select(0, keep).clone())
        if hasattr(layer, "nx"):
            layer.nx = int(keep.numel())
        return layer

    def get_out_channels(self, layer: Any) -> int:
        return int(layer.weight.shape[1])

    def get_in_channels(self, layer: Any) -> int:
        return int(layer.weight.shape[0])


def customized_pruners(model: nn.Module) -> dict[type[nn.Module], BasePruningFunc]:
    """Handlers for the foreign layer types present in ``model`` (empty for plain PyTorch models)."""
    conv1d = conv1d_type()
    if conv1d is not None and any(isinstance(m, conv1d) for m in model.modules()):
        return {conv1d: Conv1DPruner()}
    return {}
