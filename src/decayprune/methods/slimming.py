"""Network Slimming (Liu et al., ICCV 2017) as a method: an L1 penalty on BN scales, then |gamma| ranking.

During the pruning phase (up to the last selection point) ``sparsity * sign(gamma)`` is added to
the gradient of every BatchNorm scale that belongs to a structure, which drives unimportant
channels' scales toward zero; at each selection point the channels with the smallest |gamma|
(criterion ``bn_scale``, one global ranking as in the paper) go to the zeroing policy. The
paper's multi-pass variant (train with sparsity, prune, repeat) is ``prune.iterative_steps > 1``:
the penalty keeps acting between selection points.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field

from ..criteria.reduce import norm_layer_slices
from .base import STAGED_SELECTION_POINTS, register_method
from .iterative import IterativeMethod, RankingOptions

if TYPE_CHECKING:
    from .context import PruneContext

__all__ = ["NetworkSlimming"]


@register_method("slimming")
class NetworkSlimming(IterativeMethod):
    """L1 sparsity on BN scales during training, then prune the smallest |gamma| globally.

    Example:
        >>> NetworkSlimming.Options(sparsity=1e-4).sparsity
        0.0001
    """

    default_criterion = "bn_scale"
    default_iterative_steps = STAGED_SELECTION_POINTS  # the L1 penalty on BN scales acts up to the last selection point

    class Options(RankingOptions):
        """Options of :class:`NetworkSlimming` (one global ranking of |gamma| by default, as in the paper)."""

        ranking: Literal["global", "layer"] = Field("global", description="global (the paper) or per layer")

        sparsity: float = Field(1e-4, ge=0, description="L1 strength on BN scales (the paper: 1e-4 on CIFAR)")
        penalize_committed: bool = Field(False, description="keep pushing scales the decay already removes")

    @torch.no_grad()
    def after_backward(self, ctx: "PruneContext") -> None:
        strength = self.options.sparsity
        if strength <= 0 or not ctx.schedule.in_pruning_phase(ctx.step):
            return
        committed = ctx.committed()
        for bn, positions, ids in norm_layer_slices(ctx.structures):
            gamma = bn.weight
            if gamma.grad is None:
                gamma.grad = torch.zeros_like(gamma)
            step = strength * torch.sign(gamma[positions.to(gamma.device)])
            if not self.options.penalize_committed:
                step = step * (~committed[ids]).to(step.device, step.dtype)
            gamma.grad.index_add_(0, positions.to(gamma.device), step)
