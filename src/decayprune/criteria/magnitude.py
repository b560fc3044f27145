"""Weight-magnitude criteria: DepGraph's group norm and the L1 / L2 filter norms of Li et al."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from .base import Criterion, register_criterion
from .reduce import CONV_OR_LINEAR, PRODUCER, is_weight_of, layer_normalize, sum_over_slices

if TYPE_CHECKING:
    from .view import ScoringView

__all__ = ["GroupMagnitude", "L1FilterNorm", "L2FilterNorm"]


@register_criterion("group_norm")
class GroupMagnitude(Criterion):
    """Squared L2 norm of every coupled slice of a group (DepGraph, Fang et al. CVPR 2023).

    Reduction over the coupled slices (producers, the norm layer after them and the next
    layers' input columns): ``mean`` divides the summed squares by the number of slices
    (DepGraph's default), ``sum`` keeps the total. With ``normalize`` each score is divided by
    its layer group's mean, so one global ranking compares layers of different scales.
    """

    paper = "Fang et al., DepGraph: Towards Any Structural Pruning, CVPR 2023"

    class Options(BaseModel):
        """Options of :class:`GroupMagnitude`."""

        model_config = ConfigDict(extra="forbid")
        reduction: Literal["mean", "sum"] = Field("mean", description="over the coupled slices of a group")
        normalize: bool = Field(True, description="divide by the layer group's mean score")
        include_consumers: bool = Field(True, description="count the next layers' input columns too")

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        s = ctx.structures
        role = None if self.options.include_consumers else PRODUCER
        imp = sum_over_slices(s, lambda rows: rows.pow(2).sum(1), role=role)
        if self.options.reduction == "mean":
            imp = imp / sum_over_slices(s, lambda rows: torch.ones(rows.shape[0]), role=role).clamp_min(1)
        return layer_normalize(imp, s.layer_of, len(s.layers)) if self.options.normalize else imp


@register_criterion("l1_filter")
class L1FilterNorm(Criterion):
    """Sum of absolute kernel weights of the producing filters (Li et al., ICLR 2017).

    Only conv / linear weights count (not the following norm layer); with residual coupling
    the L1 norms of all coupled producer filters are summed.
    """

    paper = "Li et al., Pruning Filters for Efficient ConvNets, ICLR 2017"

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        return sum_over_slices(
            ctx.structures, lambda rows: rows.abs().sum(1), role=PRODUCER, keep=is_weight_of(*CONV_OR_LINEAR)
        )


@register_criterion("l2_filter")
class L2FilterNorm(Criterion):
    """L2 norm of the producing filters (the L2 variant in Li et al., ICLR 2017).

    Squares are summed over all coupled producer filters before the square root.
    """

    paper = "Li et al., Pruning Filters for Efficient ConvNets, ICLR 2017"

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        return sum_over_slices(
            ctx.structures, lambda rows: rows.pow(2).sum(1), role=PRODUCER, keep=is_weight_of(*CONV_OR_LINEAR)
        ).sqrt()
