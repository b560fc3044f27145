"""Helpers shared by the criterion tests (imported by name: test folders have no __init__)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from decayprune import Pruner, PruneSettings
from decayprune.methods import PruneContext


def context(model: nn.Module, example: torch.Tensor, batches: list | None = None) -> PruneContext:
    """A PruneContext over ``model`` (the generic ``iterative`` method, calibration ``batches``)."""
    settings = PruneSettings(method="iterative", target_macs_fraction=0.5)
    return Pruner(model, example[:1], settings, total_steps=10, calibration_data=batches).context


def scaled_loss(ctx: PruneContext, sid: int, alpha: float, batches: list[tuple[Any, torch.Tensor]]) -> float:
    """Mean loss over ``batches`` with every coupled slice of structure ``sid`` scaled by ``alpha``."""
    model, s = ctx.model, ctx.structures
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    factors = torch.ones(s.num_structures, dtype=torch.float64)
    factors[sid] = alpha
    with torch.no_grad():
        for param, values in s.broadcast(factors, role=None, fill=1.0):
            param.mul_(values.to(param.dtype))
        model.eval()
        loss = sum(float(ctx.loss_fn(model(x), y)) for x, y in batches) / len(batches)
    model.load_state_dict(saved)
    return loss


def kill(ctx: PruneContext, sid: int) -> None:
    """Zero every producer slice of structure ``sid`` (its channel outputs exactly zero)."""
    factors = torch.ones(ctx.structures.num_structures)
    factors[sid] = 0.0
    ctx.structures.scale_(factors)
