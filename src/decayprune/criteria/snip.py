"""SNIP (Lee et al., ICLR 2019) for channel groups: connection sensitivity summed over a structure.

SNIP scores a connection by ``|g * w|``, the first-order loss change of removing it, read from a
few batches (at initialisation in the paper; on any model here). A structure's score is the sum
of ``|g * w|`` over every element of its coupled slices (producer rows, consumer columns, norm
parameters), averaged over the calibration batches. Unlike group Taylor (``taylor``), the signs
do not cancel inside a group: each connection counts by its own magnitude.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel, ConfigDict, Field

from .base import Criterion, register_criterion
from .distributed import all_reduce_mean
from .passes import backward_passes
from .reduce import PRODUCER, Normalize, normalize_per_layer

if TYPE_CHECKING:
    from ..structure import StructureSet
    from .view import ScoringView

__all__ = ["Snip", "structure_abs_sum"]


def structure_abs_sum(structures: "StructureSet", role: str | None = None) -> torch.Tensor:
    """Per structure, the sum of ``|grad * param|`` over its slices (float64, CPU, ``[S]``).

    Example:
        >>> import torch.nn as nn
        >>> from decayprune.structure import StructureSet
        >>> net = nn.Sequential(nn.Linear(1, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
        >>> s = StructureSet(net, torch.zeros(1, 1))
        >>> for p in net.parameters():
        ...     p.grad = -torch.ones_like(p)
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1.0], [-2.0]]))
        ...     _ = net[2].weight.copy_(torch.tensor([[3.0, -5.0]]))
        >>> structure_abs_sum(s).tolist()  # |1| + |3| and |-2| + |-5|
        [4.0, 7.0]
    """
    acc = torch.zeros(structures.num_structures, dtype=torch.float64)
    for _layer, sl, ids in structures.parameter_slices(role):
        grad = sl.param.grad
        if grad is None:
            continue
        prod = (sl.param.detach() * grad.detach()).abs().movedim(sl.dim, 0)
        rows = prod.reshape(prod.shape[0], -1).sum(1).double().cpu()
        acc.index_add_(0, ids, rows[sl.positions])
    return acc


@register_criterion("snip")
class Snip(Criterion):
    """Connection sensitivity ``sum |g * w|`` over a structure's coupled slices (SNIP, per channel group).

    Averaged over ``batches`` calibration batches, then divided by the layer mean (``normalize``;
    the paper ranks connections globally, ``"none"``).

    Example:
        >>> Snip().needs == {"data", "grads"}
        True
    """

    needs = frozenset({"data", "grads"})
    summary = "Connection sensitivity |g * w| summed over the structure's coupled slices (SNIP, per channel group)."
    paper = "Lee et al., SNIP: Single-shot Network Pruning based on Connection Sensitivity, ICLR 2019"

    class Options(BaseModel):
        """Options of :class:`Snip`."""

        model_config = ConfigDict(extra="forbid")
        include_consumers: bool = Field(True, description="count the next layers' input columns too")
        batches: int = Field(4, ge=1, description="calibration batches per scoring")
        normalize: Normalize = Field("mean", description="per-layer normalisation (the paper: none)")

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        s = ctx.structures
        role = None if self.options.include_consumers else PRODUCER
        total = torch.zeros(s.num_structures, dtype=torch.float64)

        def accumulate() -> None:
            nonlocal total
            total += structure_abs_sum(s, role)

        count = backward_passes(ctx, self.options.batches, accumulate)
        scores = all_reduce_mean(total / max(count, 1)).float()
        return normalize_per_layer(scores, s, self.options.normalize)
