"""DepGraph (Fang et al., CVPR 2023) as a base method.

Importance of a channel group is the squared L2 norm of all its coupled parameter slices,
averaged over the slices (mean group reduction), then divided by the mean importance of
its layer group (normalisation) so a global ranking compares layers fairly. Optional sparse
learning adds the group-lasso gradient ``lambda * x / ||x_s||`` to every coupled slice after
backward, pushing whole groups toward zero before they are selected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from .base import register_method
from .scheduled import ScheduledMethod

if TYPE_CHECKING:
    from ..pruner import Pruner


def layer_normalize(scores: torch.Tensor, layer_of: torch.Tensor, num_layers: int) -> torch.Tensor:
    """Divide each score by the mean score of its layer group.

    Example:
        >>> layer_normalize(torch.tensor([1., 3., 10.]), torch.tensor([0, 0, 1]), 2).tolist()
        [0.5, 1.5, 1.0]
    """
    total = torch.zeros(num_layers, dtype=scores.dtype).index_add_(0, layer_of, scores)
    count = torch.zeros(num_layers, dtype=scores.dtype).index_add_(0, layer_of, torch.ones_like(scores))
    mean = total / count.clamp_min(1)
    return scores / mean[layer_of].clamp_min(1e-12)


@register_method("depgraph")
class DepGraph(ScheduledMethod):
    """Group-norm importance with optional sparse learning.

    Args:
        sparse_lambda: Group-lasso strength for sparse learning (0 turns it off).
        normalize: Divide scores by their layer-group mean before ranking.
        ranking: ``"global"`` or ``"layer"``.
        max_layer_ratio: Most any layer may lose.
    """

    class Options(BaseModel):
        """Typed options of :class:`DepGraph` (validated when a config is loaded)."""

        model_config = ConfigDict(extra="forbid")
        sparse_lambda: float = Field(0.0, ge=0, description="group-lasso strength of sparse learning (0: off)")
        normalize: bool = Field(True, description="divide scores by their layer-group mean before ranking")
        ranking: Literal["global", "layer"] = Field("global", description="one ranking over all layers, or per layer")
        max_layer_ratio: float = Field(0.9, gt=0, le=1, description="most any layer may lose")

    def __init__(self, sparse_lambda: float = 0.0, normalize: bool = True, ranking: str = "global",
                 max_layer_ratio: float = 0.9) -> None:
        super().__init__(ranking, max_layer_ratio)
        if sparse_lambda < 0:
            raise ValueError(f"sparse_lambda must be >= 0, got {sparse_lambda!r}")
        self.sparse_lambda = sparse_lambda
        self.normalize = normalize
        self._counts: torch.Tensor | None = None

    def scores(self, pruner: "Pruner") -> torch.Tensor:
        s = pruner.structures
        if self._counts is None:
            self._counts = s.slice_counts(include_consumers=True, elements=False).clamp_min(1)
        imp = s.group_sq_norms(include_consumers=True).cpu() / self._counts
        if self.normalize:
            imp = layer_normalize(imp, s.layer_of, len(s.layers))
        return imp

    @torch.no_grad()
    def regularize(self, pruner: "Pruner", step: int) -> None:
        if self.sparse_lambda <= 0 or not pruner.in_pruning_phase(step):
            return
        s = pruner.structures
        inv_norm = 1.0 / s.group_sq_norms(include_consumers=True).sqrt().clamp_min(1e-8)
        inv_norm[pruner.engine.committed()] = 0.0
        for _layer, sl, ids in s.parameter_slices():
            grad = sl.param.grad
            if grad is None:
                continue
            coef = torch.zeros(sl.param.shape[sl.dim], device=grad.device, dtype=grad.dtype)
            coef[sl.positions.to(grad.device)] = self.sparse_lambda * inv_norm.to(grad.device, grad.dtype)[ids.to(grad.device)]
            shape = [1] * grad.dim()
            shape[sl.dim] = -1
            grad.add_(sl.param * coef.view(shape))

