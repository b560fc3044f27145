"""Feature-map criteria from forward passes only: HRank's map ranks and CHIP's channel independence.

Both read each structure's activation (the output of its norm layer, or of its conv / linear
layer without one; ReLU applied by default, as the papers read post-activation maps) on up to
``samples`` calibration samples. A structure whose channel appears in several layers (residual
partners) sums their values. Scores are normalised per layer by default (both papers rank within
a layer; a global ranking needs comparable scales).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

from .base import Criterion, register_criterion
from .distributed import all_reduce_mean
from .reduce import Normalize, activation_sites, channel_dim, normalize_per_layer

if TYPE_CHECKING:
    from .view import ScoringView

__all__ = ["ChannelIndependence", "FeatureMapRank", "channel_independence", "feature_map_ranks"]


def _maps(output: torch.Tensor, dim: int) -> torch.Tensor:
    """``[N, C, H, W]``-like output as ``[N, C, rows, cols]`` matrices (1-D maps become columns)."""
    out = output.movedim(dim, 1)
    if out.dim() == 2:
        return out[:, :, None, None]
    if out.dim() == 3:
        return out[..., None]
    return out.reshape(out.shape[0], out.shape[1], out.shape[2], -1)


def feature_map_ranks(maps: torch.Tensor) -> torch.Tensor:
    """Matrix rank of each ``[rows, cols]`` map of ``maps`` ``[N, C, rows, cols]``, summed over N; shape ``[C]``.

    Example:
        >>> m = torch.zeros(1, 2, 3, 3)
        >>> m[0, 0] = torch.eye(3); m[0, 1, 0] = 1.0
        >>> feature_map_ranks(m).tolist()
        [3.0, 1.0]
    """
    return torch.linalg.matrix_rank(maps.double()).sum(0).double()


def channel_independence(maps: torch.Tensor) -> torch.Tensor:
    """CHIP: nuclear norm of the ``[C, positions]`` matrix minus its norm with channel c's row zeroed, summed over N.

    Example:
        >>> a = torch.tensor([[[3.0, 0.0]], [[0.0, 4.0]]]).reshape(1, 2, 1, 2)  # orthogonal rows
        >>> channel_independence(a).tolist()
        [3.0, 4.0]
    """
    n, c = maps.shape[:2]
    mat = maps.reshape(n, c, -1).double()
    keep = (1.0 - torch.eye(c, dtype=mat.dtype, device=mat.device))[:, :, None]  # row r zeroes channel r
    total = torch.zeros(c, dtype=torch.float64, device=mat.device)
    for sample in mat:  # one sample at a time: C matrices of [C, P] each
        full = torch.linalg.matrix_norm(sample, ord="nuc")
        total += full - torch.linalg.matrix_norm(sample[None] * keep, ord="nuc")
    return total


class _MapOptions(BaseModel):
    """Options shared by the feature-map criteria."""

    model_config = ConfigDict(extra="forbid")
    samples: int = Field(64, ge=1, description="calibration samples read")
    activation: Literal["relu", "identity"] = Field("relu", description="applied to the captured maps")
    normalize: Normalize = Field("mean", description="per-layer normalisation")


class _FeatureMapCriterion(Criterion):
    needs = frozenset({"data"})
    options: Any

    def per_channel(self, maps: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        s = ctx.structures
        targets = activation_sites(s)
        total = torch.zeros(s.num_structures, dtype=torch.float64)
        seen = {"samples": 0}
        take = {"n": 0}

        def hook(positions: torch.Tensor, ids: torch.Tensor):
            def record(module: nn.Module, _inputs: Any, output: Any) -> None:
                if not isinstance(output, torch.Tensor) or take["n"] <= 0:
                    return
                maps = _maps(output.detach()[: take["n"]], channel_dim(module))
                if self.options.activation == "relu":
                    maps = maps.clamp_min(0)
                total.index_add_(0, ids, self.per_channel(maps).cpu()[positions])

            return record

        handles = [m.register_forward_hook(hook(pos, ids)) for m, pos, ids in targets]
        try:
            for inputs in _batches_until(ctx, self.options.samples, seen, take):
                ctx.model(inputs)
        finally:
            for h in handles:
                h.remove()
        scores = all_reduce_mean(total / max(seen["samples"], 1)).float()
        return normalize_per_layer(scores, s, self.options.normalize)


def _batches_until(ctx: "ScoringView", samples: int, seen: dict[str, int], take: dict[str, int]):
    """Yield calibration inputs (no grad, eval mode) until ``samples`` samples were read."""
    model = ctx.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for inputs, labels in ctx.calibration_batches():
                left = samples - seen["samples"]
                if left <= 0:
                    return
                take["n"] = min(left, int(labels.shape[0]))
                seen["samples"] += take["n"]
                yield inputs
    finally:
        model.train(was_training)


@register_criterion("hrank")
class FeatureMapRank(_FeatureMapCriterion):
    """Average matrix rank of a channel's feature maps (HRank); forward passes only.

    Example:
        >>> FeatureMapRank(samples=16).options.samples
        16
    """

    paper = "Lin et al., HRank: Filter Pruning using High-Rank Feature Map, CVPR 2020"
    Options = _MapOptions

    def per_channel(self, maps: torch.Tensor) -> torch.Tensor:
        return feature_map_ranks(maps)


@register_criterion("chip")
class ChannelIndependence(_FeatureMapCriterion):
    """Channel independence: the nuclear-norm drop of a layer's maps without the channel (CHIP).

    Example:
        >>> ChannelIndependence().options.activation
        'relu'
    """

    paper = "Sui et al., CHIP: CHannel Independence-based Pruning for Compact Neural Networks, NeurIPS 2021"
    Options = _MapOptions

    def per_channel(self, maps: torch.Tensor) -> torch.Tensor:
        return channel_independence(maps)
