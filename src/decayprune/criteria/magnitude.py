"""Weight-magnitude criteria: DepGraph's group norm and the L1 / L2 filter norms of Li et al."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from .base import Criterion, register_criterion
from .reduce import CONV_OR_LINEAR, PRODUCER, is_weight_of, layer_normalize, sum_over_slices

if TYPE_CHECKING:
    from ..structure import StructureSet
    from .view import ScoringView

__all__ = ["GroupMagnitude", "L1FilterNorm", "L2FilterNorm", "group_magnitude"]


def _not_bias(_module: object, name: str) -> bool:
    return name != "bias"


def group_magnitude(
    structures: "StructureSet", *, reduction: str = "mean", include_consumers: bool = True, bias: bool = False
) -> torch.Tensor:
    """DepGraph's group importance before normalisation: the squared L2 norm over a group's slices.

    ``reduction="mean"`` divides by the number of slices counted. Biases (conv bias, BN beta) count
    only with ``bias=True``, as in Torch-Pruning's ``GroupMagnitudeImportance(bias=False)`` default.

    Example:
        >>> import torch.nn as nn
        >>> from decayprune.structure import StructureSet
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1., 1.], [2., 0.]])); _ = net[0].bias.fill_(5.0)
        ...     _ = net[2].weight.copy_(torch.tensor([[1., 2.]]))
        >>> s = StructureSet(net, torch.randn(1, 2), ignore_classifier=False)
        >>> group_magnitude(s).tolist()  # (|row|^2 + |column|^2) / 2 slices; the bias 5 is left out
        [1.5, 4.0]
    """
    role = None if include_consumers else PRODUCER
    keep = None if bias else _not_bias
    imp = sum_over_slices(structures, lambda rows: rows.pow(2).sum(1), role=role, keep=keep)
    if reduction == "mean":
        count = sum_over_slices(structures, lambda rows: torch.ones(rows.shape[0]), role=role, keep=keep)
        imp = imp / count.clamp_min(1)
    return imp


@register_criterion("group_norm")
class GroupMagnitude(Criterion):
    """Squared L2 norm of the coupled weight slices of a group (DepGraph, Fang et al. CVPR 2023).

    Reduction over the coupled slices (producers, the norm layer after them and the next
    layers' input columns): ``mean`` divides the summed squares by the number of slices
    (DepGraph's default), ``sum`` keeps the total. With ``normalize`` each score is divided by
    its layer group's mean, so one global ranking compares layers of different scales. Biases
    and BN beta are left out unless ``bias=True`` (Torch-Pruning's default; with these defaults the
    scores equal ``GroupMagnitudeImportance(p=2, group_reduction="mean", normalizer="mean")``, tested).
    """

    paper = "Fang et al., DepGraph: Towards Any Structural Pruning, CVPR 2023"

    class Options(BaseModel):
        """Options of :class:`GroupMagnitude`."""

        model_config = ConfigDict(extra="forbid")
        reduction: Literal["mean", "sum"] = Field("mean", description="over the coupled slices of a group")
        normalize: bool = Field(True, description="divide by the layer group's mean score")
        include_consumers: bool = Field(True, description="count the next layers' input columns too")
        bias: bool = Field(False, description="count biases and BN beta too (Torch-Pruning's default: no)")

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        s = ctx.structures
        o = self.options
        imp = group_magnitude(s, reduction=o.reduction, include_consumers=o.include_consumers, bias=o.bias)
        return layer_normalize(imp, s.layer_of, len(s.layers)) if o.normalize else imp


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
