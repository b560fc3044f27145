"""OTOv2 (Chen et al., ICLR 2023) as a base method: the DHSPG optimizer chooses and empties groups.

The method owns the training optimizer (:class:`~decayprune.methods.dhspg.DHSPG`, supplied
through ``build_optimizer``). At the partition step DHSPG scores every structure and the
redundant set is chosen by the MACs budget (the lowest-scoring structures kept, like every
other method here) or, with ``target_group_sparsity``, as OTOv2's top-K. Redundant groups
take the group-lasso half-step; once one meets the half-space condition it leaves the
redundant set and goes to the zeroing policy:

- ``oneshot``: DHSPG projects it to zero in its step (OTOv2's behaviour); the engine then
  holds it at zero (weights, gradients, momentum);
- ``sp``: DHSPG does not project; the group is handed to the decay engine, whose norm falls
  linearly to zero over N steps while training continues;
- ``sp+sr``: as ``sp``; a group that self-rectifying releases trains normally again, and
  DHSPG backfills from the next-highest-scoring groups (which take the lasso half-step and are
  handed over in turn): up to the MACs target, or, with ``target_group_sparsity`` (OTOv2's own
  rule, a number of groups), one group per released group, so the MACs may end below the
  target (the DPM paper's tables report lower FLOPs with SR for OTOv2).

Ours, not the paper's: so that removals are spread over training as with every other method,
at each later selection point the highest-scoring redundant groups are handed over until the
committed MACs meet a budget falling linearly to the target; at the last selection point
(the *deadline*) every group still redundant is handed over, so the MACs target is met
whatever the projection achieved.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn as nn
from pydantic import Field, model_validator

from ..config.train import TrainSettings
from .base import STAGED_SELECTION_POINTS, PruningMethod, register_method
from .budget import fill_to_budget
from .dhspg import DHSPG
from .iterative import RankingOptions

if TYPE_CHECKING:
    from .context import PruneContext

__all__ = ["OTOv2"]


@register_method("otov2")
class OTOv2(PruningMethod):
    """OTOv2's DHSPG with any zeroing policy.

    Example:
        >>> m = OTOv2(epsilon=0.1, variant="adamw")
        >>> m.options.epsilon, m.options.variant
        (0.1, 'adamw')
    """

    default_iterative_steps = STAGED_SELECTION_POINTS  # DHSPG partitions at the first point and projects until the last

    class Options(RankingOptions):
        """Options of :class:`OTOv2` (``None``: the default noted)."""

        ranking: Literal["global", "layer"] = Field(
            "layer", description="MACs partition: one ranking of the DHSPG score over all layers, or per layer"
        )

        variant: Literal["sgd", "adam", "adamw"] | None = Field(
            None, description="base step of DHSPG (None: 'adamw' when train.optimizer is adamw, else 'sgd')"
        )
        lmbda: float | None = Field(None, gt=0, description="group-lasso strength (None: sgd 1e-3, adam/adamw 1e-2)")
        lmbda_amplify: float | None = Field(None, gt=0, description="adaptive lambda amplifier (None: sgd 2, adam 20)")
        hat_lmbda_coeff: float | None = Field(
            None, ge=1, description="lambda upper clip / lambda (None: sgd 10, adam 1e3)"
        )
        epsilon: float = Field(0.0, ge=0, lt=1, description="half-space projection threshold, in [0, 1)")
        partition_step: int | None = Field(
            None, ge=0, description="optimizer steps before the partition (None: the first selection point)"
        )
        half_space_project_steps: int | None = Field(
            None, ge=0, description="optimizer steps before projections start (None: midway to the last selection)"
        )
        target_group_sparsity: float | None = Field(
            None, gt=0, lt=1, description="mark this fraction of groups redundant (None: chosen by the MACs target)"
        )
        tolerance_group_sparsity: float = Field(
            0.0,
            ge=0,
            lt=1,
            description="added to target_group_sparsity for the redundant set's size K (capped at 0.999 of the "
            "groups, as OTOv2); pruning stops once target_group_sparsity of the groups are committed",
        )
        group_divisible: int = Field(
            1, ge=1, description="groups kept per layer are a multiple of this (group sparsity)"
        )
        max_projections_per_step: int | None = Field(
            None, ge=1, description="cap on groups projected (or handed to the decay) per step (None: no cap)"
        )

        @model_validator(mode="after")
        def _ordered(self) -> "OTOv2.Options":
            p, h = self.partition_step, self.half_space_project_steps
            if p is not None and h is not None and h < p:
                raise ValueError(f"half_space_project_steps ({h}) must be >= partition_step ({p})")
            if (
                self.target_group_sparsity is not None
                and self.target_group_sparsity + self.tolerance_group_sparsity > 1
            ):
                raise ValueError("target_group_sparsity + tolerance_group_sparsity must be at most 1")
            return self

    options: Options  # type: ignore[assignment]

    def __init__(self, criterion: Any = None, **options: Any) -> None:
        super().__init__(criterion, **options)
        self.optimizer: DHSPG | None = None
        self.deadline = 0
        self._refill = False
        self._released = 0
        self._handed_all = False

    # ------------------------------------------------------------------ optimizer
    def build_optimizer(self, ctx: "PruneContext", settings: TrainSettings) -> torch.optim.Optimizer:
        o = self.options
        variant = o.variant or ("adamw" if settings.optimizer == "adamw" else "sgd")
        first, last = ctx.schedule.steps[0], ctx.schedule.steps[-1]
        partition = o.partition_step if o.partition_step is not None else first - 1
        project_from = o.half_space_project_steps
        if project_from is None:
            project_from = max(partition, partition + (last - partition) // 2)
        self.deadline = max(last, project_from + 1)
        momentum = settings.momentum if variant == "sgd" else None
        params = [p for p in ctx.model.parameters() if p.requires_grad]
        self.optimizer = DHSPG(
            params,
            ctx.structures,
            variant=variant,
            lr=settings.lr,
            momentum=momentum,
            weight_decay=settings.weight_decay,
            lmbda=o.lmbda,
            lmbda_amplify=o.lmbda_amplify,
            hat_lmbda_coeff=o.hat_lmbda_coeff,
            epsilon=o.epsilon,
            partition_step=partition,
            half_space_project_steps=project_from,
            target_group_sparsity=o.target_group_sparsity or 0.5,
            tolerance_group_sparsity=o.tolerance_group_sparsity,
            group_divisible=o.group_divisible,
            partitioner=None if o.target_group_sparsity is not None else (lambda scores: self._by_budget(ctx, scores)),
            project=not ctx.decay_settings.smooth,
            max_projections_per_step=o.max_projections_per_step,
        )
        return self.optimizer

    def _by_budget(self, ctx: "PruneContext", scores: torch.Tensor) -> torch.Tensor:
        """The redundant set: lowest-ranked (highest DHSPG score) groups until the final MACs target."""
        mask = torch.zeros(ctx.structures.num_structures, dtype=torch.bool)
        picked = fill_to_budget(
            ctx,
            -scores,
            ctx.final_cost,
            ctx.available(),
            ranking=self.options.ranking,
            max_layer_ratio=self.options.max_layer_ratio,
        )
        mask[picked] = True
        return mask

    def _dhspg(self, ctx: "PruneContext") -> DHSPG:
        if self.optimizer is None or ctx.optimizer is not self.optimizer:
            raise RuntimeError(
                "method 'otov2' trains with its own DHSPG optimizer: build it with "
                "pruner.build_optimizer(TrainSettings(...)) and step that optimizer"
            )
        return self.optimizer

    # ------------------------------------------------------------------ selection
    def select(self, ctx: "PruneContext") -> torch.Tensor | None:
        opt = self._dhspg(ctx)
        if not opt.tracking or not opt.partitioned:
            return None
        ids = [opt.take_pending()]
        if self._refill:
            self._refill = False
            ids.append(self._backfill(ctx, opt))
        ids.append(self._scheduled_handover(ctx, opt, torch.cat(ids)))
        if ctx.step >= self.deadline:
            # Past the deadline every group still redundant goes to the zeroing policy now.
            self._handed_all = True
            ids.append(opt.redundant.nonzero().flatten())
            opt.redundant.zero_()
        out = torch.cat(ids)
        if out.numel() == 0:
            return None
        out = torch.unique(out)
        out = out[~ctx.committed()[out]]
        if self.options.target_group_sparsity is not None:
            out = self._up_to_target(ctx, opt, out, pending=ids[0])
        return out if out.numel() else None

    def _up_to_target(self, ctx: "PruneContext", opt: DHSPG, out: torch.Tensor, pending: torch.Tensor) -> torch.Tensor:
        """Group-sparsity mode: once ``target_group_sparsity`` of the groups are committed, stop (OTOv2's
        ``reach_target_group_sparsity``): no more handovers beyond it, and the redundant set is emptied
        so the lasso and the projection stop. Groups DHSPG already projected are always kept."""
        s = ctx.structures
        target = math.ceil(self.options.target_group_sparsity * s.num_structures)  # type: ignore[operator]
        room = max(target - int(ctx.committed().sum()), 0)
        projected = torch.isin(out, pending)
        handed = out[~projected]
        room = max(room - int(projected.sum()), 0)
        if handed.numel() > room:
            handed = handed[torch.argsort(opt.scores[handed].cpu(), descending=True, stable=True)[:room]]
        out = torch.cat([out[projected], handed])
        if int(ctx.committed().sum()) + out.numel() >= target:
            opt.redundant.zero_()
        return out

    def _scheduled_handover(self, ctx: "PruneContext", opt: DHSPG, leaving: torch.Tensor) -> torch.Tensor:
        """At each selection point after the partition, hand over redundant groups (highest score first)
        until the committed MACs meet a budget falling linearly from the base to the target at the
        last point, so removals are spread over training even when few groups reach the half-space."""
        points = [p for p in ctx.schedule.steps if p > opt.partition_step + 1]
        if ctx.step not in points:
            return torch.zeros(0, dtype=torch.long)
        done = sum(1 for p in points if p <= ctx.step) / len(points)
        budget = ctx.base_cost - (ctx.base_cost - ctx.final_cost) * done
        committed = ctx.committed()
        committed[leaving] = True
        if ctx.cost_of(committed) <= budget:
            return torch.zeros(0, dtype=torch.long)
        picked = fill_to_budget(
            ctx,
            -opt.scores,
            budget,
            opt.redundant & ~committed,
            ranking=self.options.ranking,
            max_layer_ratio=1.0,
            committed=committed,
        )
        opt.redundant[picked] = False
        return picked

    def _backfill(self, ctx: "PruneContext", opt: DHSPG) -> torch.Tensor:
        """Mark the next-best free groups redundant until the final MACs target holds again.

        Before the deadline they join the redundant set (lasso half-step, then handed over);
        after it they are returned to be handed over at once.
        """
        o = self.options
        released, self._released = self._released, 0
        committed = ctx.committed() | opt.redundant
        free = ctx.available() & ~opt.redundant
        # Groups whose descent step already shrinks them (cos(-x, -d) > 0) come first: they will
        # not push back against the decay, so a release does not start a chain of releases.
        key = -opt.scores - 10.0 * (opt.cosines > 0).float()
        if o.target_group_sparsity is not None:
            # OTOv2's rule is a number of groups: one replacement per released group.
            # Out of cool-down first; if too few, the count wins over the cool-down (as for the budget).
            inf = torch.full_like(key, float("inf"))
            fresh = torch.argsort(torch.where(free, key, inf).cpu(), stable=True)[: min(released, int(free.sum()))]
            cooling = ~committed & ~free
            rest = torch.argsort(torch.where(cooling, key, inf).cpu(), stable=True)
            picked = torch.cat([fresh, rest[: min(released - fresh.numel(), int(cooling.sum()))]])
            if ctx.step >= self.deadline:
                return picked
            opt.redundant[picked] = True
            return torch.zeros(0, dtype=torch.long)
        if ctx.cost_of(committed) <= ctx.final_cost and ctx.width_multiple <= 1:  # else: back onto the width grid
            return torch.zeros(0, dtype=torch.long)
        picked = fill_to_budget(
            ctx,
            key,
            ctx.final_cost,
            free,
            ranking=o.ranking,
            max_layer_ratio=o.max_layer_ratio,
            committed=committed,
        )
        committed[picked] = True
        if ctx.cost_of(committed) > ctx.final_cost:
            # Not enough groups out of their cool-down: the budget wins, released ones may return.
            extra = fill_to_budget(
                ctx,
                key,
                ctx.final_cost,
                ~committed,
                ranking=o.ranking,
                max_layer_ratio=o.max_layer_ratio,
                committed=committed,
            )
            picked = torch.cat([picked, extra])
        if ctx.step >= self.deadline:
            return picked
        opt.redundant[picked] = True
        return torch.zeros(0, dtype=torch.long)

    def on_release(self, ctx: "PruneContext", ids: list[int]) -> None:
        opt = self._dhspg(ctx)
        if opt.tracking:
            opt.redundant[torch.as_tensor(ids, dtype=torch.long)] = False
        self._refill = True
        self._released += len(ids)

    def on_compact(self, ctx: "PruneContext", param_map: dict[nn.Parameter, nn.Parameter]) -> None:
        # compact() already moved the per-parameter state (momentum, Adam moments) to the new
        # parameters; the group bookkeeping refers to the old structures, so DHSPG becomes a
        # plain optimizer for fine-tuning.
        if self.optimizer is not None:
            self.optimizer.detach_structures()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "refill": self._refill,
            "released": self._released,
            "handed_all": self._handed_all,
            "deadline": self.deadline,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._refill = bool(state.get("refill", False))
        self._released = int(state.get("released", 0))
        self._handed_all = bool(state.get("handed_all", False))
        self.deadline = int(state.get("deadline", self.deadline))
