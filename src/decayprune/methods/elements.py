"""Unstructured methods as pruning methods: magnitude prune-retrain, SNIP and RigL on single weights.

They declare ``unit_kind = "elements"``, so the :class:`~decayprune.Pruner` builds
:class:`~decayprune.sparse.ElementMasks` (every Linear / Conv weight element a unit) instead of
channel groups, and the target is ``prune.target_sparsity``. They select at the run's selection
points (``start_epoch``, ``end_epoch``, ``iterative_steps``); the policy decides how a selected
weight reaches zero (``oneshot``, ``sp``: a decay to exactly zero in N steps, ``sp+sr``; RigL owns its
mask and takes ``oneshot`` only). A weight
that self-rectifying released is not selected again during its cooldown; the next selection
point fills the target from the next-smallest scores.

Example:
    >>> from decayprune.config import PruneSettings
    >>> PruneSettings(method="magnitude_elements", target_sparsity=0.9).prunes_elements()
    True
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..sparse.masks import ElementMasks
from ..sparse.rigl import RigL
from ..sparse.schedules import sparsity_at
from ..sparse.snip import snip_scores
from ..sparse.targets import select_smallest
from .base import STAGED_SELECTION_POINTS, PruningMethod, register_method
from .context import PruneContext

__all__ = ["ElementMagnitude", "ElementRigL", "ElementSNIP"]


def _masks(ctx: PruneContext) -> ElementMasks:
    units = ctx.structures
    if not isinstance(units, ElementMasks):
        raise TypeError(f"this method prunes single weights and needs ElementMasks, got {type(units).__name__}")
    return units


def _fill(ctx: PruneContext, scores: torch.Tensor, target: float, scope: str) -> torch.Tensor:
    """Smallest-scored weights to add toward ``target``; weights cooling down after a release go last."""
    units = _masks(ctx)
    committed = ctx.committed().cpu()
    scores = scores.detach().float().cpu().clone()
    scores[~committed & ~ctx.available().cpu()] = float("inf")
    return select_smallest(units, scores, target, scope=scope, committed=committed)


def _target(ctx: PruneContext) -> float:
    if ctx.target_sparsity is None:
        raise ValueError("this method needs prune.target_sparsity")
    return ctx.target_sparsity


class MagnitudeOptions(BaseModel):
    """Options of ``magnitude_elements``."""

    model_config = ConfigDict(extra="forbid")

    schedule: Literal["oneshot", "linear", "cubic"] = Field(
        "cubic",
        description="sparsity over the selection points: oneshot (all at the first), linear, or cubic (Zhu & Gupta)",
    )
    scope: Literal["global", "layer"] = Field(
        "global", description="global: one |w| ranking over every masked layer; layer: the target in each layer"
    )


@register_method("magnitude_elements")
class ElementMagnitude(PruningMethod):
    """Han et al.'s magnitude prune-retrain on single weights, to ``target_sparsity`` on a schedule.

    At the k-th of K selection points the smallest-``|w|`` weights are started until the committed
    fraction reaches :func:`~decayprune.sparse.sparsity_at` at ``k`` (``begin=0``, ``end=K``: like the
    MACs budget of the channel methods, the first point already prunes; cubic: ``1 - (1 - k/K)^3``);
    training between the points is the retraining (:class:`~decayprune.sparse.MagnitudePruning` is
    the same rule outside the Pruner).
    """

    unit_kind = "elements"
    default_iterative_steps = STAGED_SELECTION_POINTS  # the cubic schedule tightens over the selection points
    Options = MagnitudeOptions

    def select(self, ctx: PruneContext) -> torch.Tensor | None:
        steps = ctx.schedule.steps
        if not ctx.schedule.is_selection_step(ctx.step):
            return None
        point = steps.index(ctx.step) + 1  # the k-th of K points reaches the schedule's value at k / K
        target = sparsity_at(point, target=_target(ctx), begin=0, end=len(steps), kind=self.options.schedule)
        return _fill(ctx, _masks(ctx).producer_norms(), target, self.options.scope)


class SNIPOptions(BaseModel):
    """Options of ``snip_elements``."""

    model_config = ConfigDict(extra="forbid")

    batches: int = Field(1, ge=1, description="calibration batches whose |g * w| are summed")


@register_method("snip_elements")
class ElementSNIP(PruningMethod):
    """SNIP (Lee et al. 2019) on single weights: connection sensitivity ``|g * w|``, global ranking.

    The scores are taken once, at the first selection point, from ``batches`` batches of the
    calibration data (the training loader in ``decayprune prune``); the whole target is selected
    there. Later selection points (``iterative_steps`` > 1) only refill weights self-rectifying
    released, from the same scores.
    """

    unit_kind = "elements"
    Options = SNIPOptions

    def __init__(self, criterion: Any = None, **options: Any) -> None:
        super().__init__(criterion, **options)
        self.scores: torch.Tensor | None = None

    def select(self, ctx: PruneContext) -> torch.Tensor | None:
        if not ctx.schedule.is_selection_step(ctx.step):
            return None
        if self.scores is None:  # the first point (or a resumed run: the scores are taken again)
            if ctx.calibration_data is None:
                raise ValueError("snip_elements needs calibration_data (batches of inputs and labels)")
            units = _masks(ctx)
            device = units.device
            batches = (
                (x.to(device), y.to(device)) for x, y in islice(iter(ctx.calibration_data), self.options.batches)
            )
            self.scores = snip_scores(units, ctx.model, batches, ctx.loss_fn).cpu()
        return _fill(ctx, self.scores, _target(ctx), "global")


class RigLOptions(BaseModel):
    """Options of ``rigl_elements``."""

    model_config = ConfigDict(extra="forbid")

    delta_t: int = Field(100, ge=1, description="steps between drop-and-grow updates")
    alpha: float = Field(0.3, ge=0, le=1, description="fraction of a layer's active weights replaced at the start")
    end_fraction: float = Field(0.75, gt=0, le=1, description="last update at this fraction of the run (paper: 0.75)")
    distribution: Literal["erk", "uniform"] = Field("erk", description="layer densities: Erdős-Rényi-Kernel or equal")
    seed: int = Field(0, ge=0, description="seed of the random initial masks")


@register_method("rigl_elements")
class ElementRigL(PruningMethod):
    """RigL (Evci et al. 2020) from a config: sparse training at a constant count of active weights.

    When the Pruner is built, each layer gets a random mask at its ERK (or uniform) density for
    ``1 - target_sparsity`` overall; every ``delta_t`` steps up to ``end_fraction`` of the run, each
    layer drops its smallest active weights and grows as many inactive ones with the largest dense
    gradient (read in :meth:`observe_gradients`, before the engine zeroes the held ones), grown from
    exactly zero (:class:`~decayprune.sparse.RigL`). The paper trains from scratch: give the config
    no ``pretrain`` section (and no ``model.weights``). Drops are immediate by definition, so the
    only policy is ``oneshot``.
    """

    unit_kind = "elements"
    policies = ("oneshot",)
    selects_at_points = False  # its updates follow delta_t / end_fraction, not the selection points
    Options = RigLOptions

    def __init__(self, criterion: Any = None, **options: Any) -> None:
        super().__init__(criterion, **options)
        self.rigl: RigL | None = None

    def setup(self, ctx: PruneContext) -> None:
        o = self.options
        t_end = max(1, round(o.end_fraction * ctx.total_steps))
        self.rigl = RigL(
            _masks(ctx),
            density=1.0 - _target(ctx),
            t_end=t_end,
            delta_t=o.delta_t,
            alpha=o.alpha,
            distribution=o.distribution,
            seed=o.seed,
        )

    def _bound(self, ctx: PruneContext) -> RigL:
        if self.rigl is None:
            raise RuntimeError("rigl_elements: setup() has not run")
        self.rigl.optimizer = ctx.optimizer  # grown weights start with zero optimizer state
        return self.rigl

    def observe_gradients(self, ctx: PruneContext) -> None:
        self._bound(ctx).after_backward(ctx.step + 1)

    def after_step(self, ctx: PruneContext) -> None:
        self._bound(ctx).after_step(ctx.step)
