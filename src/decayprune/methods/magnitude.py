"""Magnitude baselines: L1-norm filter pruning (Li et al., ICLR 2017) and random selection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
import torch.nn as nn

from ..structure import PRODUCER
from .base import register_method
from .scheduled import ScheduledMethod

if TYPE_CHECKING:
    from ..pruner import Pruner


@register_method("l1")
class L1Filter(ScheduledMethod):
    """Prune the filters with the smallest L1 norm (sum of absolute kernel weights).

    Only the producing conv/linear weights count (not the following BN), as in Li et al.;
    with residual coupling the L1 norms of all coupled producer filters are summed.
    Ranking is per layer by default, as the paper prunes each layer by its own ratio.
    """

    ranking = "layer"

    class Options(BaseModel):
        """Typed options of :class:`L1Filter`."""

        model_config = ConfigDict(extra="forbid")
        ranking: Literal["global", "layer"] = Field("layer", description="per layer (the paper) or one global ranking")
        max_layer_ratio: float = Field(0.9, gt=0, le=1, description="most any layer may lose")

    def scores(self, pruner: "Pruner") -> torch.Tensor:
        s = pruner.structures
        acc = torch.zeros(s.num_structures)
        for layer, sl, ids in s.parameter_slices(PRODUCER):
            owner = sl.name.rpartition(".")[0]
            module = s.model.get_submodule(owner) if owner else s.model
            if not isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) or not sl.name.endswith("weight"):
                continue
            per_pos = sl.param.detach().abs().movedim(sl.dim, 0).reshape(sl.param.shape[sl.dim], -1).sum(1)
            acc.index_add_(0, ids, per_pos[sl.positions.to(per_pos.device)].cpu().float())
        return acc


@register_method("random")
class RandomSelection(ScheduledMethod):
    """Uniformly random selection: the control every criterion must beat.

    Args:
        seed: Seed of the selection (independent of the training seed).
    """

    class Options(BaseModel):
        """Typed options of :class:`RandomSelection`."""

        model_config = ConfigDict(extra="forbid")
        seed: int = Field(0, ge=0, description="seed of the selection (independent of the training seed)")
        ranking: Literal["global", "layer"] = Field("layer", description="per layer or one global ranking")
        max_layer_ratio: float = Field(0.9, gt=0, le=1, description="most any layer may lose")

    def __init__(self, seed: int = 0, ranking: str = "layer", max_layer_ratio: float = 0.9) -> None:
        super().__init__(ranking, max_layer_ratio)
        self.generator = torch.Generator().manual_seed(seed)

    def scores(self, pruner: "Pruner") -> torch.Tensor:
        return torch.rand(pruner.structures.num_structures, generator=self.generator)
