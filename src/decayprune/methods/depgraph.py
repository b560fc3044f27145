"""DepGraph (Fang et al., CVPR 2023) as a base method.

Importance of a channel group is its ``group_norm`` criterion score (squared L2 over the coupled
weight slices, mean over the slices, divided by the layer group's mean; Torch-Pruning's
``GroupMagnitudeImportance(p=2)``). Sparse learning (``sparse_lambda > 0``) adds DepGraph's
regulariser ``reg * gamma_k * w`` after backward (or the group lasso, ``regularizer:
group_lasso``; see :mod:`decayprune.methods.depgraph_reg`), either during the pruning phase of the
run (``sparse_phase: pruning``) or only in a ``sparse_learning`` phase of its own before the
pruning run (``sparse_phase: own``: DepGraph's three-phase protocol). ``progressive_steps > 1``
is DepGraph's own one-shot procedure: at a selection point the budget is reached in that many
pruning steps with no training in between, each re-scoring the groups as if the ones chosen
so far were removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field

from ..criteria.magnitude import GroupMagnitude
from .base import STAGED_SELECTION_POINTS, register_method
from .budget import fill_to_budget
from .depgraph_reg import depgraph_regularize, group_lasso_regularize
from .iterative import IterativeMethod, RankingOptions

if TYPE_CHECKING:
    from ..structure import StructureSet
    from .context import PruneContext

__all__ = ["DepGraph"]


@contextmanager
def _as_removed(structures: "StructureSet", removed: torch.Tensor) -> Iterator[None]:
    """Zero every slice (producer and consumer) of the ``removed`` structures; restore on exit."""
    saved = []
    with torch.no_grad():
        for _layer, sl, ids in structures.parameter_slices():
            hit = removed[ids]
            if not bool(hit.any()):
                continue
            pos = sl.positions[hit].to(sl.param.device)
            saved.append((sl.param, sl.dim, pos, sl.param.index_select(sl.dim, pos).clone()))
            sl.param.index_fill_(sl.dim, pos, 0.0)
    try:
        yield
    finally:
        with torch.no_grad():
            for param, dim, pos, values in reversed(saved):
                param.index_copy_(dim, pos, values)


@register_method("depgraph")
class DepGraph(IterativeMethod):
    """Group-norm importance with optional sparse learning and progressive one-shot pruning.

    Example:
        >>> o = DepGraph.Options(sparse_lambda="5e-4")
        >>> o.sparse_lambda, o.regularizer, o.alpha
        (0.0005, 'depgraph', 16.0)
    """

    default_criterion = "group_norm"
    supports_sparse_learning = True

    @classmethod
    def default_selection_points(cls, options: dict[str, Any]) -> int:
        """STAGED_SELECTION_POINTS when sparse learning runs in the pruning phase (its regulariser acts up to the
        last point), else 1."""
        regularised = options["sparse_lambda"] > 0 and options["sparse_phase"] == "pruning"
        return STAGED_SELECTION_POINTS if regularised else cls.default_iterative_steps

    class Options(RankingOptions):
        """Options of :class:`DepGraph`."""

        sparse_lambda: float = Field(0.0, ge=0, description="sparse-learning strength (DepGraph's reg; 0: off)")
        regularizer: Literal["depgraph", "group_lasso"] = Field(
            "depgraph",
            description="depgraph: reg * gamma_k * w, gamma_k = alpha^((I_max-I_k)/(I_max-I_min)) (the paper, "
            "Torch-Pruning); group_lasso: reg * x / ||x_s|| (uniform)",
        )
        alpha: float = Field(16.0, ge=1, description="depgraph regulariser: gamma_k ranges over [1, alpha]")
        sparse_phase: Literal["pruning", "own"] = Field(
            "pruning",
            description="pruning: regularise during the pruning phase of the run; own: only in the config's "
            "sparse_learning phase before it (DepGraph's protocol)",
        )
        progressive_steps: int = Field(
            1,
            ge=1,
            description="pruning steps per selection point, no training in between, re-scored as if the "
            "groups picked so far were removed (DepGraph's one-shot procedure; 1: one fill)",
        )

    def regularize(self, structures: "StructureSet", live: torch.Tensor | None = None) -> None:
        """Add the sparse-learning gradient to the structures ``live`` (default all)."""
        o = self.options
        if o.regularizer == "depgraph":
            depgraph_regularize(structures, o.sparse_lambda, o.alpha, live)
        else:
            group_lasso_regularize(structures, o.sparse_lambda, live)

    def sparse_learning_step(self, structures: "StructureSet") -> Callable[[], None]:
        """The regulariser of a ``sparse_learning`` phase (all structures, after each backward)."""
        return lambda: self.regularize(structures)

    @torch.no_grad()
    def after_backward(self, ctx: "PruneContext") -> None:
        o = self.options
        if o.sparse_lambda <= 0 or o.sparse_phase != "pruning" or not ctx.schedule.in_pruning_phase(ctx.step):
            return
        self.regularize(ctx.structures, live=~ctx.committed().cpu())

    def _rescored(self, ctx: "PruneContext", removed: torch.Tensor) -> torch.Tensor:
        s = ctx.structures
        with _as_removed(s, removed):
            scores = self.scores(ctx)
        if isinstance(self.criterion, GroupMagnitude) and self.criterion.options.normalize:
            # Removed groups score 0, so the layer sum is the live groups' sum: rescale the mean from
            # all the layer's groups to the live ones, as after a real removal.
            total = torch.zeros(len(s.layers)).index_add_(0, s.layer_of, torch.ones(s.num_structures))
            live = torch.zeros(len(s.layers)).index_add_(0, s.layer_of, (~removed).float())
            scores = scores * (live / total.clamp_min(1))[s.layer_of]
        return scores

    def select(self, ctx: "PruneContext") -> torch.Tensor | None:
        steps = self.options.progressive_steps
        if steps <= 1 or self._refill or not ctx.schedule.is_selection_step(ctx.step):
            return super().select(ctx)
        budget = ctx.budget()
        committed = ctx.committed().cpu().clone()
        start = ctx.cost_of(committed)
        if start <= budget:
            return None
        available = ctx.available().cpu()
        o = self.options
        picked = []
        for k in range(1, steps + 1):
            target = start - (start - budget) * k / steps
            scores = self._rescored(ctx, committed)
            ids = fill_to_budget(
                ctx,
                scores,
                target,
                available & ~committed,
                ranking=o.ranking,
                max_layer_ratio=o.max_layer_ratio,
                committed=committed,
                layer_caps=o.layer_caps,
            )
            committed[ids] = True
            picked.append(ids)
        return torch.cat(picked) if picked else None
