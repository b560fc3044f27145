"""Criterion + schedule: rank structures by a criterion at each selection point and fill the budget.

At each of ``iterative_steps`` evenly spaced selection points the budget (MACs or latency)
tightens linearly from the base model's to the final target; the criterion scores every structure and
the lowest-scored are handed to the zeroing policy until the budget is met. After a
self-rectifying release the budget is refilled with the next-best candidates in the same
``Pruner.after_step`` call that reads the release back (the step of the release on the CPU;
the next read-back point on an accelerator), and only while a decay can still end before the
recovery margin (the engine releases nothing later). Released structures sit out their
cool-down unless the budget cannot be met without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from .base import PruningMethod, register_method
from .budget import check_layer_caps, fill_to_budget, layer_cap_ratios

if TYPE_CHECKING:
    from .context import PruneContext

__all__ = ["IterativeMethod", "RankingOptions"]


class RankingOptions(BaseModel):
    """How scores become a selection (options shared by every criterion-ranking method)."""

    model_config = ConfigDict(extra="forbid")
    ranking: Literal["global", "layer"] = Field(
        "layer",
        description="layer: the same fraction of every layer, lowest-scored first (Torch-Pruning's default); global: "
        "one ranking over all layers (scores must be comparable across layers)",
    )
    max_layer_ratio: float = Field(0.9, gt=0, le=1, description="most any layer may lose")
    layer_caps: dict[str, float] = Field(
        default_factory=dict,
        description="per-layer max pruned fraction, {layer name or glob: fraction} (e.g. from sensitivity)",
    )
    backfill: Literal["budget", "count"] = Field(
        "budget",
        description="after a self-rectifying release: budget: refill to the MACs budget in force; count: replace "
        "each released structure by one next-best structure (MACs may end below or above the target)",
    )


@register_method("iterative")
class IterativeMethod(PruningMethod):
    """Prune the lowest-scored structures by any criterion on the budget schedule.

    Example:
        >>> from decayprune.criteria import create_criterion
        >>> IterativeMethod(create_criterion("l2_filter"), ranking="layer").options.ranking
        'layer'
    """

    uses_criterion = True
    default_criterion = "group_norm"
    Options = RankingOptions

    def __init__(self, criterion: Any = None, **options: Any) -> None:
        super().__init__(criterion, **options)
        if self.criterion is None:
            raise ValueError(f"method {self.name!r} ranks by a criterion; pass one (see decayprune.list_criteria())")
        self._refill = False
        self._released = 0

    def setup(self, ctx: "PruneContext") -> None:
        check_layer_caps(ctx.structures, self.options.layer_caps)

    def scores(self, ctx: "PruneContext") -> torch.Tensor:
        """Importance of every structure (the criterion's scores), shape ``[S]``."""
        if self.criterion is None:
            raise ValueError(f"method {self.name!r} ranks by a criterion, but none was given")
        return self.criterion.score(ctx.scoring)

    def layer_caps(self, ctx: "PruneContext") -> dict[str, float]:
        """``{layer name or glob: max pruned fraction}`` in force (``method_options.layer_caps``)."""
        return self.options.layer_caps

    def select(self, ctx: "PruneContext") -> torch.Tensor | None:
        scheduled = ctx.schedule.is_selection_step(ctx.step)
        if not (scheduled or self._refill):
            return None
        self._refill = False
        released, self._released = self._released, 0
        if not scheduled and self.options.backfill == "count":
            return self._replace(ctx, released)
        budget = ctx.budget()
        if ctx.committed_cost() <= budget and (scheduled or ctx.width_multiple <= 1):
            return None  # (a refill with a width multiple goes on: a release may have left a layer off its grid)
        scores = self.scores(ctx)
        ranking, cap, caps = self.options.ranking, self.options.max_layer_ratio, self.layer_caps(ctx)
        picked = fill_to_budget(
            ctx, scores, budget, ctx.available(), ranking=ranking, max_layer_ratio=cap, layer_caps=caps
        )
        committed = ctx.committed()
        committed[picked] = True
        if ctx.cost_of(committed) > budget:
            # Not enough fresh candidates (e.g. many releases cooling down): the budget wins over
            # the cool-down, so released structures may be picked again, lowest score first.
            extra = fill_to_budget(
                ctx,
                scores,
                budget,
                ~committed,
                ranking=ranking,
                max_layer_ratio=cap,
                committed=committed,
                layer_caps=caps,
            )
            picked = torch.cat([picked, extra])
        return picked

    def _replace(self, ctx: "PruneContext", count: int) -> torch.Tensor | None:
        """``count`` next-best available structures, lowest score first, within the layer caps."""
        if count <= 0:
            return None
        s = ctx.structures
        scores = self.scores(ctx)
        committed = ctx.committed().cpu()
        candidates = ctx.available().cpu()
        ratios = layer_cap_ratios(s, self.options.max_layer_ratio, self.layer_caps(ctx))
        sizes = torch.bincount(s.layer_of, minlength=len(s.layers))
        left = [int(sizes[i] * ratios[i]) for i in range(len(s.layers))]
        taken = torch.bincount(s.layer_of[committed], minlength=len(s.layers)).tolist()
        picked: list[int] = []
        for i in torch.argsort(torch.where(candidates, scores, torch.full_like(scores, float("inf")))).tolist():
            if len(picked) == count or not bool(candidates[i]):
                break
            layer = int(s.layer_of[i])
            if taken[layer] < min(left[layer], int(sizes[layer]) - 1):
                picked.append(i)
                taken[layer] += 1
        return torch.tensor(picked, dtype=torch.long) if picked else None

    def on_release(self, ctx: "PruneContext", ids: list[int]) -> None:
        self._refill = True
        self._released += len(ids)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "refill": self._refill, "released": self._released}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._refill = bool(state.get("refill", False))
        self._released = int(state.get("released", 0))
