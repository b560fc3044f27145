"""DepGraph (Fang et al., CVPR 2023) as a base method.

Importance of a channel group is its ``group_norm`` criterion score (squared L2 over all
coupled slices, mean over the slices, divided by the layer group's mean). Optional sparse
learning adds the group-lasso gradient ``lambda * x / ||x_s||`` to every coupled slice after
backward, during the pruning phase, pushing whole groups toward zero before they are selected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field

from .base import register_method
from .iterative import IterativeMethod, RankingOptions

if TYPE_CHECKING:
    from .context import PruneContext

__all__ = ["DepGraph"]


@register_method("depgraph")
class DepGraph(IterativeMethod):
    """Group-norm importance with optional sparse learning.

    Example:
        >>> DepGraph.Options(sparse_lambda="1e-4").sparse_lambda
        0.0001
    """

    default_criterion = "group_norm"

    class Options(RankingOptions):
        """Options of :class:`DepGraph`."""

        sparse_lambda: float = Field(0.0, ge=0, description="group-lasso strength of sparse learning (0: off)")

    @torch.no_grad()
    def after_backward(self, ctx: "PruneContext") -> None:
        strength = self.options.sparse_lambda
        if strength <= 0 or not ctx.schedule.in_pruning_phase(ctx.step):
            return
        s = ctx.structures
        inv_norm = 1.0 / s.group_sq_norms(include_consumers=True).sqrt().clamp_min(1e-8)
        inv_norm[ctx.committed().to(inv_norm.device)] = 0.0
        for _layer, sl, ids in s.parameter_slices():
            grad = sl.param.grad
            if grad is None:
                continue
            coef = torch.zeros(sl.param.shape[sl.dim], device=grad.device, dtype=grad.dtype)
            coef[sl.positions.to(grad.device)] = strength * inv_norm.to(grad.device, grad.dtype)[ids.to(grad.device)]
            shape = [1] * grad.dim()
            shape[sl.dim] = -1
            grad.add_(sl.param * coef.view(shape))
