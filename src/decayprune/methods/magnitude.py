"""Magnitude baselines: L1-norm filter pruning (Li et al., ICLR 2017) and random selection."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
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

    def __init__(self, seed: int = 0, ranking: str = "layer", max_layer_ratio: float = 0.9) -> None:
        super().__init__(ranking, max_layer_ratio)
        self.generator = torch.Generator().manual_seed(seed)

    def scores(self, pruner: "Pruner") -> torch.Tensor:
        return torch.rand(pruner.structures.num_structures, generator=self.generator)
