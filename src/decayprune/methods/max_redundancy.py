"""Layer-wise pruning guided by each layer's maximum redundancy (the seed's gradient-matrix row).

At every selection point the effective rank ``r`` of each layer's per-sample gradient (or
activation) matrix, over the channels not yet selected, is measured on the calibration batches
(:func:`decayprune.criteria.caps_from_gradient_rank`): ``1 - r / C`` is the most that layer can
lose. The layers are then pruned one after another in forward order, each down to that maximum,
lowest-scored channels first (default criterion ``l1_filter``), until the budget in force is met;
training between the selection points is the retraining after each layer-wise pass, and the
ranks are measured again on the retrained network at the next point. When every layer is at its
maximum and the budget is still not met, the target wins: the remaining channels are taken in the
same order up to ``max_layer_ratio``, and the step is recorded in ``shortfalls``.
"""

from __future__ import annotations

import glob
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field

from ..criteria.passes import eval_mode
from ..criteria.reduce import group_activation_sites
from ..criteria.redundancy import caps_from_gradient_rank
from ..errors import UserError
from .base import STAGED_SELECTION_POINTS, register_method
from .budget import fill_to_budget, layer_cap_ratios
from .iterative import IterativeMethod, RankingOptions

if TYPE_CHECKING:
    from .context import PruneContext

__all__ = ["MaxRedundancy"]


@register_method("max_redundancy")
class MaxRedundancy(IterativeMethod):
    """Prune layer by layer, each up to the maximum its gradient matrix's effective rank allows.

    Example:
        >>> MaxRedundancy.Options(source="activation").energy
        0.99
    """

    default_criterion = "l1_filter"
    default_iterative_steps = STAGED_SELECTION_POINTS  # layer-wise passes with retraining (and new ranks) between

    class Options(RankingOptions):
        """Options of :class:`MaxRedundancy`."""

        ranking: Literal["global"] = Field(
            "global", description="fixed: layers in forward order, each by the criterion (one layer-wise ranking)"
        )
        source: Literal["grad", "activation"] = Field(
            "grad", description="rows of the matrix: the loss gradient at each channel, or the activation"
        )
        energy: float = Field(0.99, gt=0, le=1, description="share of the squared spectrum the effective rank holds")
        batches: int = Field(8, ge=1, description="calibration batches per rank measurement")

    def __init__(self, criterion: Any = None, **options: Any) -> None:
        super().__init__(criterion, **options)
        self._caps: dict[str, float] | None = None
        self._forward_position: torch.Tensor | None = None
        self.shortfalls: list[int] = []

    def setup(self, ctx: "PruneContext") -> None:
        super().setup(ctx)
        if ctx.calibration_data is None:
            raise UserError("method 'max_redundancy' measures gradient ranks on calibration_data; pass some batches")

    def _positions(self, ctx: "PruneContext") -> torch.Tensor:
        """Each layer group's place in the forward pass (when its first activation site runs)."""
        if self._forward_position is None:
            order: list[int] = []
            handles = [
                group_activation_sites(g)[0][0].register_forward_hook(lambda *_a, i=i: order.append(i))
                for i, g in enumerate(ctx.groups)
            ]
            try:
                inputs, _labels = next(iter(ctx.calibration_batches(1)))
                with torch.no_grad(), eval_mode(ctx.model):
                    ctx.model(inputs)
            finally:
                for handle in handles:
                    handle.remove()
            first = list(dict.fromkeys(order)) + [i for i in range(len(ctx.groups)) if i not in order]
            position = torch.empty(len(first), dtype=torch.float64)
            position[torch.tensor(first)] = torch.arange(len(first), dtype=torch.float64)
            self._forward_position = position
        return self._forward_position

    def scores(self, ctx: "PruneContext") -> torch.Tensor:
        """The layer's forward position plus the unit's rank by the criterion within it, in [0, 1)."""
        raw = super().scores(ctx).double().cpu()
        s = ctx.structures
        key = self._positions(ctx)[s.layer_of.cpu()].clone()
        for layer in s.layers:
            ids = layer.ids.cpu()
            rank = torch.empty(ids.numel(), dtype=torch.float64)
            rank[torch.argsort(raw[ids], stable=True)] = torch.arange(ids.numel(), dtype=torch.float64)
            key[ids] += rank / ids.numel()
        return key

    def layer_caps(self, ctx: "PruneContext") -> dict[str, float]:
        """The measured maximum of every layer (tightened by ``method_options.layer_caps``), then those caps."""
        if self._caps is None:
            self._measure(ctx)
        assert self._caps is not None
        user = self.options.layer_caps
        s = ctx.structures
        user_ratios = layer_cap_ratios(s, self.options.max_layer_ratio, user)
        exact = {
            glob.escape(layer.name): min(self._caps.get(layer.name, 0.0), ratio)
            for layer, ratio in zip(s.layers, user_ratios, strict=True)
        }
        return {**exact, **user}

    def _measure(self, ctx: "PruneContext") -> None:
        o = self.options
        self._caps = caps_from_gradient_rank(
            ctx.scoring, source=o.source, energy=o.energy, batches=o.batches, gone=ctx.committed()
        )

    def select(self, ctx: "PruneContext") -> torch.Tensor | None:
        scheduled = ctx.schedule.is_selection_step(ctx.step)
        if scheduled:
            self._measure(ctx)
        fills = scheduled or (self._refill and self.options.backfill == "budget")
        picked = super().select(ctx)
        if not fills:
            return picked
        committed = ctx.committed()
        if picked is not None:
            committed[picked] = True
        budget = ctx.budget()
        if ctx.cost_of(committed) <= budget:
            return picked
        # Every layer is at its measured maximum: the target wins, in the same layer-wise order.
        self.shortfalls.append(ctx.step)
        extra = fill_to_budget(
            ctx,
            self.scores(ctx),
            budget,
            ctx.available() & ~committed,
            ranking="global",
            max_layer_ratio=self.options.max_layer_ratio,
            committed=committed,
            layer_caps=self.options.layer_caps,
        )
        return extra if picked is None else torch.cat([picked, extra])

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "caps": self._caps, "shortfalls": list(self.shortfalls)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        caps = state.get("caps")
        self._caps = None if caps is None else {str(k): float(v) for k, v in caps.items()}
        self.shortfalls = [int(s) for s in state.get("shortfalls", [])]
