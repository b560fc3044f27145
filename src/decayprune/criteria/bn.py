"""Norm-layer criteria: Network Slimming's |gamma| and a data-free score from the BN statistics.

Both read the affine norm layers (BatchNorm) among a structure's producer slices. A structure
with several of them (residual partners, a depthwise block's two BNs) reduces them with the
``reduction`` option. Structures whose channels pass through no norm layer are scored by
``missing``: ``"last"`` ranks them after every scored structure, ``"error"`` refuses the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn as nn  # noqa: F401  (the docstring examples use nn)
from pydantic import BaseModel, ConfigDict, Field
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import UserError
from .base import Criterion, register_criterion
from .distributed import all_reduce_mean
from .reduce import layer_normalize, norm_layer_slices

if TYPE_CHECKING:
    from ..structure import StructureSet
    from .view import ScoringView

__all__ = ["BNScale", "BNStatistics", "norm_layer_slices"]


class _NormOptions(BaseModel):
    """Options shared by the norm-layer criteria."""

    model_config = ConfigDict(extra="forbid")
    reduction: Literal["sum", "mean", "max"] = Field("sum", description="over the norm layers of one structure")
    normalize: bool = Field(False, description="divide by the layer group's mean score")
    missing: Literal["last", "error"] = Field("last", description="structures without a norm layer")


def _reduce_norm_values(
    structures: "StructureSet", values_of: Callable[[_BatchNorm], torch.Tensor], options: Any, name: str
) -> torch.Tensor:
    """Reduce per-channel values of every norm layer to one score per structure."""
    n = structures.num_structures
    total = torch.zeros(n, dtype=torch.float64)
    count = torch.zeros(n, dtype=torch.float64)
    peak = torch.full((n,), -math.inf, dtype=torch.float64)
    for module, positions, ids in norm_layer_slices(structures):
        values = values_of(module).detach().double().cpu()[positions]
        total.index_add_(0, ids, values)
        count.index_add_(0, ids, torch.ones_like(values))
        peak.scatter_reduce_(0, ids, values, reduce="amax")
    found = count > 0
    if options.reduction == "sum":
        scores = total
    elif options.reduction == "mean":
        scores = total / count.clamp_min(1)
    else:
        scores = torch.where(found, peak, torch.zeros_like(peak))
    if not bool(found.all()):
        lost = sorted({structures.layers[int(i)].name for i in structures.layer_of[~found].tolist()})
        if options.missing == "error" or not bool(found.any()):
            raise UserError(
                f"criterion {name!r} scores channels through their BatchNorm layer, but layer group(s) {lost} have "
                "none; use a weight criterion (e.g. l1_filter), or missing='last' to keep them"
            )
        scores = torch.where(found, scores, scores[found].max() * 2 + 1)
    scores = scores.float()
    return layer_normalize(scores, structures.layer_of, len(structures.layers)) if options.normalize else scores


@register_criterion("bn_scale")
class BNScale(Criterion):
    """|gamma| of the channel's BatchNorm (Network Slimming's ranking); needs only the weights.

    Coupled BNs of one structure (residual partners) reduce by ``reduction`` (default ``sum``).

    Example:
        >>> BNScale(reduction="max").options.reduction
        'max'
    """

    paper = "Liu et al., Learning Efficient Convolutional Networks through Network Slimming, ICCV 2017"
    Options = _NormOptions

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        return _reduce_norm_values(ctx.structures, lambda bn: bn.weight.abs(), self.options, self.name)


def expected_activation(mean: torch.Tensor, std: torch.Tensor, activation: str, statistic: str) -> torch.Tensor:
    """E[f(z)] (``statistic="mean"``) or sqrt(E[f(z)^2]) (``"rms"``) for z ~ N(mean, std^2), f = ReLU or |.|.

    Example:
        >>> expected_activation(torch.tensor([0.0]), torch.tensor([1.0]), "relu", "mean")  # 1/sqrt(2 pi)
        tensor([0.3989])
    """
    std = std.clamp_min(1e-12)
    t = mean / std
    normal = torch.distributions.Normal(torch.zeros_like(t), torch.ones_like(t))
    pdf, cdf = normal.log_prob(t).exp(), normal.cdf(t)
    if activation == "relu":
        if statistic == "mean":
            return mean * cdf + std * pdf
        return ((mean**2 + std**2) * cdf + mean * std * pdf).clamp_min(0).sqrt()
    if statistic == "mean":  # E|z| of a normal
        return std * math.sqrt(2 / math.pi) * torch.exp(-0.5 * t**2) + mean * (1 - 2 * normal.cdf(-t))
    return (mean**2 + std**2).sqrt()


@register_criterion("bn_statistics")
class BNStatistics(Criterion):
    """Expected post-BN activation from gamma, beta and the running variance; data-free.

    In eval mode a BN channel outputs ``z ~ N(beta, (gamma * sqrt(var / (var + eps)))^2)`` when its
    input follows the running statistics; the score is ``E[ReLU(z)]`` (``activation="relu"``,
    ``statistic="mean"``), or ``E|z|``, or the RMS of either. A channel whose BN output is almost
    always negative (dead after ReLU) or near zero scores low. Coupled BNs reduce by ``reduction``.
    This is the seed's data-free BN-statistics row (Oh et al., WACV 2022: a filter's importance from the
    pretrained BN parameters' model of its activation distribution); the closed form used here is the
    expectation of the ReLU of that Gaussian (Kang & Han, ICML 2020), not checked against Oh et al.'s
    own equations.

    Example:
        >>> BNStatistics().options.activation
        'relu'
    """

    paper = (
        "Oh et al., Batch Normalization Tells You Which Filter is Important, WACV 2022 (data-free; the "
        "E[ReLU(z)] form of the Gaussian model is Kang & Han's, ICML 2020)"
    )

    class Options(_NormOptions):
        """Options of :class:`BNStatistics`."""

        activation: Literal["relu", "identity"] = Field("relu", description="non-linearity after the BN")
        statistic: Literal["mean", "rms"] = Field("mean", description="E[f(z)] or sqrt(E[f(z)^2])")

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        def values(bn: _BatchNorm) -> torch.Tensor:
            gamma, beta = bn.weight.detach().float(), bn.bias.detach().float() if bn.bias is not None else 0.0
            std = gamma.abs()
            if bn.running_var is not None:
                # Each DDP rank's running statistics moved with its own batch: score with their mean.
                var = all_reduce_mean(bn.running_var.detach().float())
                std = std * (var / (var + bn.eps)).sqrt()
            mean = beta if isinstance(beta, torch.Tensor) else torch.zeros_like(gamma)
            return expected_activation(mean, std, self.options.activation, self.options.statistic)

        return _reduce_norm_values(ctx.structures, values, self.options, self.name)
