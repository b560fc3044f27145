"""Train-from-scratch baseline (Liu et al., Rethinking the Value of Network Pruning, ICLR 2019).

Take a pruned run's architecture, re-initialise every weight, and train it with the same budget:
``Scratch-E`` the same epochs, ``Scratch-B`` the same computation (epochs scaled by the MACs saved).

Example:
    >>> scratch_epochs(10, base_macs=4e6, pruned_macs=1e6, budget="B")
    40
    >>> scratch_epochs(10, base_macs=4e6, pruned_macs=1e6, budget="B", max_factor=2)
    20
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn as nn

from .errors import UserError
from .models._common import init_weights
from .structure import load_pruned

__all__ = ["reinitialize", "scratch_epochs", "scratch_model"]


def reinitialize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Re-initialise every layer in place (defaults, then the zoo's Kaiming / BN init); BN statistics reset.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
        >>> with torch.no_grad():
        ...     _ = net[1].weight.fill_(7.0)
        >>> reinitialize(net)[1].weight.tolist()
        [1.0, 1.0]
    """
    torch.manual_seed(seed)
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    init_weights(model)
    return model


def scratch_epochs(
    epochs: int, base_macs: float, pruned_macs: float, budget: str = "E", max_factor: float | None = None
) -> int:
    """Epochs to train a pruned architecture from scratch: ``"E"`` the same, ``"B"`` the same computation."""
    if budget not in ("E", "B"):
        raise UserError(f"scratch budget must be 'E' (same epochs) or 'B' (same computation), got {budget!r}")
    if epochs < 1 or base_macs <= 0 or pruned_macs <= 0:
        raise UserError("scratch_epochs needs epochs >= 1 and positive MACs")
    if budget == "E":
        return epochs
    factor = base_macs / pruned_macs
    if max_factor is not None:
        factor = min(factor, max_factor)
    return max(epochs, int(math.ceil(epochs * factor - 1e-9)))


def scratch_model(pruned_path: str | os.PathLike[str], seed: int = 0, model: nn.Module | None = None) -> nn.Module:
    """The architecture saved by a pruned run (``<run>/pruned``), with fresh random weights."""
    return reinitialize(load_pruned(pruned_path, model=model), seed)
