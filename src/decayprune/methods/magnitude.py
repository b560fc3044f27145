"""Magnitude baselines as methods: L1-norm filter pruning (Li et al., ICLR 2017) and random selection.

Both are :class:`~decayprune.methods.iterative.IterativeMethod` with another default
criterion and per-layer ranking (the paper prunes each layer by its own ratio).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import register_method
from .iterative import IterativeMethod, RankingOptions

__all__ = ["L1Pruning", "RandomPruning"]


class _LayerRanking(RankingOptions):
    """Ranking options with per-layer ranking as the default."""

    ranking: Literal["global", "layer"] = Field("layer", description="per layer (default) or one global ranking")


@register_method("l1")
class L1Pruning(IterativeMethod):
    """Prune the filters with the smallest L1 norm, layer by layer (criterion ``l1_filter``)."""

    default_criterion = "l1_filter"
    Options = _LayerRanking


@register_method("random")
class RandomPruning(IterativeMethod):
    """Uniformly random selection, layer by layer (criterion ``random``; seed in criterion_options)."""

    default_criterion = "random"
    Options = _LayerRanking
