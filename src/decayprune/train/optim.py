"""Optimizer construction from :class:`TrainSettings`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from decayprune.config.train import TrainSettings

__all__ = ["build_optimizer"]


def build_optimizer(
    model_or_params: nn.Module | Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    settings: TrainSettings,
) -> torch.optim.Optimizer:
    """Build the optimizer named by ``settings.optimizer``.

    Weight decay is applied to every parameter, norm-layer and bias ones included:
    that is the usual CIFAR protocol (SGD 0.1, momentum 0.9, wd 5e-4) and keeps
    one parameter group, so optimizer-state remapping after compaction stays simple.
    Pass your own parameter groups to decay parameters differently.

    Args:
        model_or_params: A module (its trainable parameters are used), an iterable of
            parameters, or an iterable of parameter-group dicts.
        settings: Training settings (``optimizer``, ``lr``, ``momentum``, ``nesterov``,
            ``weight_decay``).

    Returns:
        A ``torch.optim.SGD`` or ``torch.optim.AdamW`` instance.

    Example:
        >>> opt = build_optimizer(nn.Linear(3, 2), TrainSettings(lr=0.01))
        >>> type(opt).__name__, opt.param_groups[0]["lr"]
        ('SGD', 0.01)
    """
    if isinstance(model_or_params, nn.Module):
        params: list[Any] = [p for p in model_or_params.parameters() if p.requires_grad]
    else:
        params = list(model_or_params)
    if not params:
        raise ValueError("build_optimizer got no trainable parameters")
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=settings.lr,
            momentum=settings.momentum,
            nesterov=settings.nesterov,
            weight_decay=settings.weight_decay,
        )
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    raise ValueError(f"unknown optimizer {settings.optimizer!r}; allowed: 'sgd', 'adamw'")
