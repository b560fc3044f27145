"""Taylor criteria (Molchanov et al.): the loss change a structure's removal causes, from gradients.

* ``taylor_activation`` (ICLR 2017): ``|mean over positions of activation x gradient|`` of each
  output channel, averaged over calibration samples, normalised per layer.
* ``taylor`` (CVPR 2019): over every coupled slice of a group, ``(sum of g * w)^2`` (first order) or
  ``(-sum of g * w + 1/2 w_S^T H w_S)^2`` (second order, the quadratic term from a Hutchinson
  estimate with Hessian-vector products), averaged over calibration batches. ``form="bn"`` is the
  paper's best variant: a gate after each BN, ``(gamma * g_gamma + beta * g_beta)^2``, in train mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import UserError
from .base import Criterion, register_criterion
from .distributed import all_reduce_mean
from .passes import backward_passes, eval_mode
from .reduce import (
    PRODUCER,
    Normalize,
    activation_sites,
    channel_dim,
    norm_layer_slices,
    normalize_per_layer,
    structure_dot,
)

if TYPE_CHECKING:
    from .view import ScoringView

__all__ = ["Taylor", "TaylorActivation"]


class _Running:
    """Mixin keeping a running average of scores across selection points (``momentum``)."""

    options: Any
    _running: torch.Tensor | None = None

    def _blend(self, new: torch.Tensor) -> torch.Tensor:
        m = self.options.momentum
        prev = self._running
        out = new if prev is None or prev.shape != new.shape or m == 0 else m * prev + (1 - m) * new
        self._running = out.clone()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {} if self._running is None else {"running": self._running.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._running = state.get("running")


def _gate_grad(bn: _BatchNorm) -> torch.Tensor:
    """``gamma * g_gamma + beta * g_beta`` per channel (zero where a gradient is missing)."""
    value = torch.zeros_like(bn.weight.detach())
    if bn.weight.grad is not None:
        value += bn.weight.detach() * bn.weight.grad
    if bn.bias is not None and bn.bias.grad is not None:
        value += bn.bias.detach() * bn.bias.grad
    return value


@contextmanager
def _train_mode_keeping_statistics(model: nn.Module) -> Iterator[None]:
    """Train mode (batch statistics, as during training) with every norm layer's running buffers restored."""
    saved = {
        m: {k: v.clone() for k, v in m.named_buffers(recurse=False)}
        for m in model.modules()
        if isinstance(m, _BatchNorm)
    }
    was_training = model.training
    model.train()
    try:
        yield
    finally:
        model.train(was_training)
        with torch.no_grad():
            for module, buffers in saved.items():
                for name, value in buffers.items():
                    getattr(module, name).copy_(value)


@register_criterion("taylor_activation")
class TaylorActivation(_Running, Criterion):
    """|activation x gradient| per output channel (Molchanov et al. 2017), normalised per layer.

    For each calibration sample the product of a channel's activation and the loss gradient is
    averaged over positions and its absolute value taken (``per_sample=False``: the absolute value
    of the batch mean); samples are averaged. The activation is the output of the channel's norm
    layer (or of its conv / linear layer without one); coupled partners (residual adds,
    concatenation inputs) are summed into one structure score. The paper L2-normalises each layer
    (``normalize="l2"``); the default divides by the layer mean instead, because with one global
    ranking L2 normalisation makes wide layers look unimportant (on small_cnn / digits at 20% MACs
    it lost to random selection).

    Example:
        >>> TaylorActivation(batches=2).needs == {"data", "grads"}
        True
    """

    needs = frozenset({"data", "grads"})
    paper = "Molchanov et al., Pruning Convolutional Neural Networks for Resource Efficient Inference, ICLR 2017"

    class Options(BaseModel):
        """Options of :class:`TaylorActivation`."""

        model_config = ConfigDict(extra="forbid")
        batches: int = Field(8, ge=1, description="calibration batches per scoring")
        normalize: Normalize = Field("mean", description="per-layer normalisation (the paper: l2)")
        per_sample: bool = Field(True, description="abs per sample (the paper) or of the batch mean")
        momentum: float = Field(0.0, ge=0, lt=1, description="running average across selection points")

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        s = ctx.structures
        targets = activation_sites(s)
        total = torch.zeros(s.num_structures, dtype=torch.float64)
        samples = [0]

        def on_grad(value: torch.Tensor, positions: torch.Tensor, ids: torch.Tensor, dim: int) -> Callable:
            def hook(grad: torch.Tensor) -> None:
                prod = (value * grad.detach()).movedim(dim, -1)
                per = prod.reshape(prod.shape[0], -1, prod.shape[-1]).mean(1)  # [N, C]
                per = per.abs().sum(0) if self.options.per_sample else per.sum(0).abs()
                total.index_add_(0, ids, per.double().cpu()[positions])

            return hook

        def forward_hook(positions: torch.Tensor, ids: torch.Tensor) -> Callable:
            def record(module: nn.Module, _inputs: Any, output: Any) -> None:
                if isinstance(output, torch.Tensor) and output.requires_grad:
                    # Clone: an in-place op after this module (ReLU(inplace=True)) would change the value.
                    output.register_hook(on_grad(output.detach().clone(), positions, ids, channel_dim(module)))

            return record

        def count() -> None:
            samples[0] += 1

        handles = [m.register_forward_hook(forward_hook(pos, ids)) for m, pos, ids in targets]
        try:
            batches = list(ctx.calibration_batches(self.options.batches))
            backward_passes(ctx.with_batches(batches), len(batches), count)
        finally:
            for h in handles:
                h.remove()
        sizes = [int(labels.shape[0]) for _inputs, labels in batches]
        denom = sum(sizes) if self.options.per_sample else samples[0]
        scores = all_reduce_mean(total / max(denom, 1)).float()
        return self._blend(normalize_per_layer(scores, s, self.options.normalize))


@register_criterion("taylor")
class Taylor(_Running, Criterion):
    """First- or second-order Taylor estimate of the loss change from removing a whole group (Molchanov 2019).

    ``form="group"`` (the paper): per batch ``(sum over every coupled slice of g * w)^2``; with
    ``order=2`` the squared estimate is ``(-sum g*w + 1/2 w_S^T H w_S)^2``, where ``w_S^T H w_S`` is
    estimated by Hutchinson's method with one random sign per structure (``v = sum_S eps_S w_S``,
    ``eps_S * <w_S, H v>``; unbiased, and exact in expectation for the whole within-group block,
    the diagonal included). ``form="element"``: ``sum of (g * w)^2`` over the slices (first order
    only). ``form="bn"`` (the paper's best variant, its method 22): a gate after each BatchNorm, scored
    ``(gamma * g_gamma + beta * g_beta)^2`` per batch (the gate's gradient, summed over the coupled
    BNs of a structure) with the model in train mode as during training (the running statistics
    are restored); the paper accumulates it with ``momentum=0.9``. Norm layers (BN gamma and beta)
    count as slices, so a BN-heavy group is not undervalued.
    Scores are averaged over ``batches`` calibration batches. The paper ranks raw scores globally
    (``normalize="none"``); the default divides by the layer mean, because raw Taylor scores differ
    by orders of magnitude across layers and a global ranking then starves some layers.

    Example:
        >>> Taylor(order=2).needs == {"data", "grads", "hvp"}
        True
    """

    needs = frozenset({"data", "grads"})
    paper = "Molchanov et al., Importance Estimation for Neural Network Pruning, CVPR 2019"

    class Options(BaseModel):
        """Options of :class:`Taylor`."""

        model_config = ConfigDict(extra="forbid")
        order: Literal[1, 2] = Field(1, description="1: first order; 2: adds the Hutchinson quadratic term")
        form: Literal["group", "element", "bn"] = Field(
            "group",
            description="(sum g*w)^2, sum (g*w)^2, or bn: a gate after BN, (gamma g_gamma + beta g_beta)^2, train mode",
        )
        include_consumers: bool = Field(True, description="count the next layers' input columns too")
        batches: int = Field(8, ge=1, description="calibration batches per scoring")
        hutchinson_samples: int = Field(1, ge=1, description="random probes per batch (order 2)")
        normalize: Normalize = Field("mean", description="per-layer normalisation (the paper: none)")
        momentum: float = Field(0.0, ge=0, lt=1, description="running average across selection points")
        seed: int = Field(0, ge=0, description="seed of the Hutchinson probes")

        @model_validator(mode="after")
        def _check(self) -> "Taylor.Options":
            if self.order == 2 and self.form != "group":
                raise ValueError(f"order 2 needs form='group' (the quadratic term is per group), got {self.form!r}")
            return self

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.options.order == 2:
            self.needs = frozenset({"data", "grads", "hvp"})  # type: ignore[misc]
        self.generator = torch.Generator().manual_seed(self.options.seed)

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        s = ctx.structures
        role = None if self.options.include_consumers else PRODUCER
        total = torch.zeros(s.num_structures, dtype=torch.float64)
        if self.options.form == "bn":
            count = self._gate_passes(ctx, total)
        elif self.options.order == 1:

            def accumulate() -> None:
                nonlocal total
                if self.options.form == "group":
                    total += structure_dot(s, lambda p: p.grad, role) ** 2
                else:
                    total += structure_dot(s, lambda p: None if p.grad is None else p.grad * p.grad * p, role)

            count = backward_passes(ctx, self.options.batches, accumulate)
        else:
            count = 0
            with eval_mode(ctx.model):
                for inputs, labels in ctx.calibration_batches(self.options.batches):
                    total += self._second_order(ctx, inputs, labels, role)
                    count += 1
            ctx.model.zero_grad(set_to_none=True)
        scores = all_reduce_mean(total / max(count, 1)).float()
        return self._blend(normalize_per_layer(scores, s, self.options.normalize))

    def _gate_passes(self, ctx: "ScoringView", total: torch.Tensor) -> int:
        """Add ``(sum over the structure's BNs of gamma * g_gamma + beta * g_beta)^2`` per batch; train mode.

        That sum is the gradient of a gate multiplying the BN outputs (at 1): the paper's method 22.
        The BN running statistics are restored afterwards, so scoring leaves the model as found.
        """
        s = ctx.structures
        sites = list(norm_layer_slices(s))
        covered = torch.zeros(s.num_structures, dtype=torch.bool)
        for _bn, _pos, ids in sites:
            covered[ids] = True
        if not bool(covered.all()):
            lost = sorted({s.layers[int(i)].name for i in s.layer_of[~covered].tolist()})
            raise UserError(f"taylor form='bn' scores a gate after each BatchNorm, but layer group(s) {lost} have none")
        count = 0
        with _train_mode_keeping_statistics(ctx.model):
            for inputs, labels in ctx.calibration_batches(self.options.batches):
                ctx.model.zero_grad(set_to_none=True)
                ctx.loss_fn(ctx.model(inputs), labels).backward()
                gate = torch.zeros(s.num_structures, dtype=torch.float64)
                for bn, positions, ids in sites:
                    value = _gate_grad(bn)
                    gate.index_add_(0, ids, value.double().cpu()[positions])
                total += gate**2
                count += 1
        ctx.model.zero_grad(set_to_none=True)
        return count

    def _second_order(self, ctx: "ScoringView", inputs: Any, labels: torch.Tensor, role: str | None) -> torch.Tensor:
        """``(-g.w + 1/2 q)^2`` per structure for one batch, ``q`` a Hutchinson estimate of ``w_S^T H w_S``."""
        s = ctx.structures
        params = list(dict.fromkeys(sl.param for _l, sl, _i in s.parameter_slices(role)))
        params = [p for p in params if p.requires_grad]
        loss = ctx.loss_fn(ctx.model(inputs), labels)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        grad_of = {p: g for p, g in zip(params, grads, strict=True)}
        first = structure_dot(s, lambda p: None if grad_of.get(p) is None else grad_of[p], role)
        live = [(p, g) for p, g in zip(params, grads, strict=True) if g is not None and g.requires_grad]
        quad = torch.zeros(s.num_structures, dtype=torch.float64)
        samples = self.options.hutchinson_samples
        for k in range(samples):
            eps = torch.randint(0, 2, (s.num_structures,), generator=self.generator).float() * 2 - 1
            mult = {p: torch.zeros_like(p) for p, _g in live}
            for param, values in s.broadcast(eps, role=role, fill=0.0):
                if param in mult:
                    mult[param] = mult[param] + values.to(param.dtype)
            vs = [p.detach() * mult[p] for p, _g in live]
            if not live:
                break
            hv = torch.autograd.grad(
                [g for _p, g in live],
                [p for p, _g in live],
                grad_outputs=vs,
                retain_graph=k < samples - 1,
                allow_unused=True,
            )
            hv_of = {p: h for (p, _g), h in zip(live, hv, strict=True)}
            quad += eps.double() * structure_dot(s, hv_of.get, role)
        quad /= samples
        return (-first + 0.5 * quad) ** 2

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "generator" in state:
            self.generator.set_state(state["generator"])
