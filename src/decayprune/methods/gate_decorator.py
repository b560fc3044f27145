"""Gate Decorator (You et al., NeurIPS 2019) as a base method: gated norms, Taylor gate scores, Tick-Tock.

Gates ``g`` sit after every prunable norm layer (:mod:`.gated_norms`). Between the first and the
last selection point of the Pruner's schedule the method runs Tick-Tock (:mod:`.tick_tock`):

* Tick (``tick_steps`` steps): only the gates train (other weights frozen), and the Taylor
  score ``|g * dL/dg|`` of every structure accumulates over the tick's batches; at its end the
  ``floor(prune_ratio * remaining)`` lowest-scored channels are handed to the zeroing policy
  under one global threshold, each layer keeping ``max(min_channels, int(min_ratio * C))``
  channels (:mod:`.global_threshold`; the final fill and self-rectifying refills keep it too).
* Tock (``tock_steps`` steps after every ``tock_every`` ticks, and ``initial_tock_steps`` before
  the first tick): all weights train with an L1 penalty ``sparse_lambda * |g|`` on the gates.

With ``freeze_norm_weight`` (default, as the reference's ``extract_from_bn``) the gated norm's
own weight (``sign(gamma)`` once the gate holds ``|gamma|``) takes no gradient while gated, so the
tock's L1 on ``g`` cannot be paid for by growing ``|gamma|``.

Ticks stop once the MACs target is met; should the last selection point come first, the target
is filled there from the latest scores. With ``lr_min``/``lr_max`` set the method also drives the
learning rate (ticks at ``lr_min`` for the gates; tocks triangular ``lr_min -> lr_max -> lr_min``),
restoring the optimizer's own rate after each step. With DPM (``sp``) a selected channel's whole
producer vector (conv row, norm affine, gate) decays to zero over N steps instead of jumping;
with ``sp+sr`` released channels are replaced by the next-best channels of the last tick's
scores, so the MACs reached at that tick hold. Before compaction the gates fold into the norm
layers (``gamma * g``, ``beta * g``), which leaves the output unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config.train import TrainSettings
from ..errors import UserError
from ..structure.channel_params import ChannelMultiplier
from ..train.optim import build_optimizer
from .base import STAGED_SELECTION_POINTS, PruningMethod, register_method
from .budget import fill_to_budget
from .gated_norms import add_norm_gates, gate_taylor_scores
from .global_threshold import channel_macs, layer_floor, tick_selection
from .tick_tock import Phase, TickTockSchedule, triangular_lr

if TYPE_CHECKING:
    from .context import PruneContext

__all__ = ["GateDecorator", "GateDecoratorOptions"]


class GateDecoratorOptions(BaseModel):
    """Options of :class:`GateDecorator` (paper settings: sparse_lambda 1e-3, lr 1e-3..1e-2, p 0.005 VGG).

    Example:
        >>> GateDecoratorOptions(prune_ratio="0.1", tick_steps=5).prune_ratio
        0.1
    """

    model_config = ConfigDict(extra="forbid")
    prune_ratio: float = Field(0.005, gt=0, le=1, description="p: share of the remaining channels one tick prunes")
    tick_steps: int = Field(50, ge=1, description="optimizer steps of one tick (gates train, scores accumulate)")
    tock_every: int = Field(10, ge=1, description="T: ticks between two tocks")
    tock_steps: int = Field(200, ge=0, description="optimizer steps of one tock (0: no tocks)")
    sparse_lambda: float = Field(1e-3, ge=0, description="L1 strength on the gates during tocks")
    min_channels: int = Field(1, ge=1, description="channels every layer keeps at least")
    min_ratio: float = Field(
        0.1, ge=0, lt=1, description="every layer keeps at least int(min_ratio * channels) (the reference: 0.1)"
    )
    freeze_norm_weight: bool = Field(
        True, description="hold the gated norm's own weight fixed while the gate carries the scale (the reference)"
    )
    initial_tock_steps: int = Field(0, ge=0, description="a tock of this many steps before the first tick")
    eta: float = Field(0.0, ge=0, description="FLOPs-aware score: subtract eta * (channel MACs / base MACs)")
    lr_min: float | None = Field(None, gt=0, description="tick learning rate (None: leave the optimizer's)")
    lr_max: float | None = Field(None, gt=0, description="tock peak learning rate (None: leave the optimizer's)")
    freeze_in_tick: bool = Field(True, description="freeze every weight but the gates during ticks")
    gate_init: Literal["gamma", "ones"] = Field("gamma", description="gate start: |gamma| (output unchanged) or 1")

    @model_validator(mode="after")
    def _lr_pair(self) -> "GateDecoratorOptions":
        if (self.lr_min is None) != (self.lr_max is None):
            raise ValueError("give both lr_min and lr_max (or neither, to keep the optimizer's learning rate)")
        if self.lr_min is not None and self.lr_max is not None and self.lr_min > self.lr_max:
            raise ValueError(f"lr_min ({self.lr_min}) must not exceed lr_max ({self.lr_max})")
        return self


@register_method("gate_decorator")
class GateDecorator(PruningMethod):
    """Gated norms scored by |g * dL/dg|, pruned by Tick-Tock to the MACs target.

    Example:
        >>> from decayprune import Pruner, PruneSettings, create_model
        >>> model = create_model("small_cnn", num_classes=10, in_channels=1)
        >>> settings = PruneSettings(method="gate_decorator", target_macs_fraction=0.5,
        ...                          method_options={"prune_ratio": 0.2, "tick_steps": 2, "tock_steps": 0},
        ...                          decay={"policy": "oneshot"})
        >>> p = Pruner(model, torch.zeros(1, 1, 8, 8), settings, total_steps=40)
        >>> len(p.method.gates), p.method.ticktock.start
        (5, 1)
    """

    default_iterative_steps = STAGED_SELECTION_POINTS  # Tick-Tock runs between the first and the last selection point

    class Options(GateDecoratorOptions):
        """Options of :class:`GateDecorator` (see :class:`GateDecoratorOptions`)."""

    def __init__(self, criterion: Any = None, **options: Any) -> None:
        if criterion is not None:
            raise UserError("method 'gate_decorator' scores with its gates and takes no criterion")
        super().__init__(None, **options)
        self.gates: list[ChannelMultiplier] = []
        self.ticktock: TickTockSchedule | None = None
        self._scores = torch.zeros(0, dtype=torch.float64)
        self._last_scores: torch.Tensor | None = None
        self._macs_share: torch.Tensor | None = None
        self._done = False
        self._select_now = False
        self._refill = False
        self._target_macs: float | None = None
        self._saved_lrs: list[float] | None = None
        self._frozen: list[torch.nn.Parameter] = []
        self._floor_caps: dict[str, float] = {}
        self.ticks_done = 0

    @property
    def opts(self) -> GateDecoratorOptions:
        """The validated options, typed."""
        assert isinstance(self.options, GateDecoratorOptions)
        return self.options

    # ------------------------------------------------------------------ setup
    def setup(self, ctx: "PruneContext") -> None:
        steps = ctx.schedule.steps
        if len(steps) < 2:
            raise UserError(
                "gate_decorator runs Tick-Tock between the first and the last selection point: set "
                f"prune.iterative_steps >= 2 (got selection steps {list(steps)})"
            )
        o = self.opts
        self.ticktock = TickTockSchedule(
            steps[0], o.tick_steps, o.tock_every, o.tock_steps, first_tock=o.initial_tock_steps
        )
        self.gates = add_norm_gates(ctx, o.gate_init)
        self._frozen = []
        if o.freeze_norm_weight:
            for gate in self.gates:
                weight = ctx.model.get_submodule(gate.module_name).get_parameter("weight")
                if weight.requires_grad:
                    weight.requires_grad_(False)
                    weight.grad = None
                    self._frozen.append(weight)
        s = ctx.structures
        self._floor_caps = {
            layer.name: (layer.size - layer_floor(layer.size, o.min_channels, o.min_ratio) + 0.5) / layer.size
            for layer in s.layers
        }
        self._scores = torch.zeros(ctx.structures.num_structures, dtype=torch.float64)

    def build_optimizer(self, ctx: "PruneContext", settings: TrainSettings) -> torch.optim.Optimizer:
        """The plain optimizer of ``settings`` with the gates in their own group (no weight decay)."""
        gate_ids = {id(g.param) for g in self.gates}
        frozen = {id(p) for p in self._frozen}  # no gradient while gated; in the optimizer for after compaction
        weights = [p for p in ctx.model.parameters() if (p.requires_grad or id(p) in frozen) and id(p) not in gate_ids]
        groups: list[dict[str, Any]] = [
            {"params": weights},
            {"params": [g.param for g in self.gates], "weight_decay": 0.0},
        ]
        return build_optimizer(groups, settings)

    # ------------------------------------------------------------------ phases
    def phase(self, ctx: "PruneContext", step: int) -> Phase | None:
        """The Tick-Tock phase of optimizer step ``step`` (None: not pruning then)."""
        if self._done or self.ticktock is None or step > ctx.schedule.steps[-1]:
            return None
        return self.ticktock.phase(step)

    @torch.no_grad()
    def after_backward(self, ctx: "PruneContext") -> None:
        phase = self.phase(ctx, ctx.step + 1)
        if phase is None:
            return
        if phase.kind == "tick":
            if phase.position == 0:
                self._scores.zero_()
            self._scores += gate_taylor_scores(self.gates, ctx.structures.num_structures)
            self._set_lrs(ctx, self.opts.lr_min, freeze=self.opts.freeze_in_tick)
            return
        strength = self.opts.sparse_lambda
        if strength > 0:
            for gate in self.gates:
                if gate.param.grad is not None:
                    gate.param.grad.add_(strength * torch.sign(gate.param))
        o = self.opts
        lr = None
        if o.lr_min is not None and o.lr_max is not None:
            lr = triangular_lr(phase.position, phase.length, o.lr_min, o.lr_max)
        self._set_lrs(ctx, lr, freeze=False)

    def _set_lrs(self, ctx: "PruneContext", lr: float | None, *, freeze: bool) -> None:
        """For this step only: gates at ``lr`` (None: unchanged); with ``freeze`` the other weights stand still."""
        if ctx.optimizer is None or (lr is None and not freeze):
            return
        gate_ids = {id(g.param) for g in self.gates}
        self._saved_lrs = [group["lr"] for group in ctx.optimizer.param_groups]
        for group in ctx.optimizer.param_groups:
            has_gate = any(id(p) in gate_ids for p in group["params"])
            if freeze and not has_gate:
                group["lr"] = 0.0
                continue
            if freeze:  # a group mixing gates and weights: hold the weights through their gradients
                for p in group["params"]:
                    if id(p) not in gate_ids and p.grad is not None:
                        p.grad.zero_()
            if lr is not None and (has_gate or not freeze):
                group["lr"] = lr

    def after_step(self, ctx: "PruneContext") -> None:
        if self._saved_lrs is not None and ctx.optimizer is not None:
            for group, lr in zip(ctx.optimizer.param_groups, self._saved_lrs, strict=True):
                group["lr"] = lr
        self._saved_lrs = None
        phase = self.phase(ctx, ctx.step)
        if phase is not None and phase.kind == "tick" and phase.last:
            self._select_now = True
            self.ticks_done += 1

    # ------------------------------------------------------------------ selection
    def scores(self, ctx: "PruneContext") -> torch.Tensor:
        """The latest tick's accumulated Taylor scores, FLOPs-adjusted when ``eta > 0`` (float64, ``[S]``)."""
        scores = self._scores.clone()
        if self.opts.eta > 0:
            if self._macs_share is None:
                self._macs_share = channel_macs(ctx.structures) / ctx.base_macs
            scores -= self.opts.eta * self._macs_share
        return scores

    def select(self, ctx: "PruneContext") -> torch.Tensor | None:
        picked = torch.zeros(0, dtype=torch.long)
        if self._select_now:
            self._select_now = False
            self._last_scores = self.scores(ctx)
            picked = tick_selection(
                ctx,
                self._last_scores,
                self.opts.prune_ratio,
                min_channels=self.opts.min_channels,
                min_ratio=self.opts.min_ratio,
                macs_floor=ctx.final_cost,
            )
        elif self._refill and self._target_macs is not None and self._last_scores is not None:
            picked = fill_to_budget(
                ctx,
                self._last_scores,
                self._target_macs,
                ctx.available(),
                max_layer_ratio=1.0,
                layer_caps=self._floor_caps,
            )
        self._refill = False
        committed = ctx.committed()
        committed[picked] = True
        if not self._done and ctx.step >= ctx.schedule.steps[-1] and ctx.cost_of(committed) > ctx.final_cost:
            # The pruning phase ends before Tick-Tock met the target: fill it now from the latest scores.
            scores = self._last_scores if self._last_scores is not None else self.scores(ctx)
            extra = fill_to_budget(
                ctx,
                scores,
                ctx.final_cost,
                ctx.available() & ~committed,
                max_layer_ratio=1.0,
                committed=committed,
                layer_caps=self._floor_caps,
            )
            picked = torch.cat([picked, extra])
            committed[extra] = True
        if picked.numel() or ctx.step >= ctx.schedule.steps[-1]:
            macs = ctx.cost_of(committed)
            self._target_macs = macs if self._target_macs is None else min(self._target_macs, macs)
            if macs <= ctx.final_cost or ctx.step >= ctx.schedule.steps[-1]:
                self._done = True
        return picked if picked.numel() else None

    def on_release(self, ctx: "PruneContext", ids: list[int]) -> None:
        self._refill = True

    # ------------------------------------------------------------------ compaction and state
    def before_compact(self, ctx: "PruneContext") -> None:
        self.gates = []  # the Pruner has folded them into their norm layers
        for weight in self._frozen:  # gamma * g is the norm's weight again: trainable
            weight.requires_grad_(True)
        self._frozen = []

    def state_dict(self) -> dict[str, Any]:
        return {
            "scores": self._scores.clone(),
            "last_scores": None if self._last_scores is None else self._last_scores.clone(),
            "done": self._done,
            "select_now": self._select_now,
            "refill": self._refill,
            "target_macs": self._target_macs,
            "ticks_done": self.ticks_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("scores") is not None:
            self._scores = state["scores"].clone()
        self._last_scores = None if state.get("last_scores") is None else state["last_scores"].clone()
        self._done, self._select_now = bool(state["done"]), bool(state["select_now"])
        self._refill, self._target_macs = bool(state["refill"]), state["target_macs"]
        self.ticks_done = int(state.get("ticks_done", 0))
