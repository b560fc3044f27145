"""SOSP-H (Nonnenmacher et al., ICLR 2022): second-order structured saliency with one HVP per batch.

With ``theta`` every prunable parameter (every slice of every unit, zero elsewhere), one
Hessian-vector product per batch gives ``H theta``; the saliency of unit ``s`` is
``|theta_s^T g_s + 1/2 theta_s^T (H theta)_s|``: the predicted loss change of removing ``s`` with the
Hessian's cross terms to *all other* units included (the global correlations of the paper, unlike a
per-group ``w_S^T H w_S``). Gradients and ``H theta`` are averaged over the calibration batches
before the absolute value. The scores are ranked globally as they are, with no per-layer
normalisation; :func:`bottleneck_layers` reports the layers a global ranking empties (the
paper's bottleneck analysis: candidates to widen).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..structure import StructureSet
from .base import Criterion, register_criterion
from .distributed import all_reduce_mean
from .passes import eval_mode
from .reduce import structure_dot

if TYPE_CHECKING:
    from .view import ScoringView

__all__ = ["SOSPH", "bottleneck_layers", "sosp_terms"]


def sosp_terms(ctx: "ScoringView", inputs: object, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(theta_s^T g_s, theta_s^T (H theta)_s)`` per unit for one batch (float64, ``[S]``), one HVP.

    Example:
        >>> import torch.nn as nn
        >>> from decayprune.criteria import ScoringView
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> view = ScoringView(net, StructureSet(net, torch.zeros(1, 2)))
        >>> first, second = sosp_terms(view, torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))
        >>> first.shape, second.shape
        (torch.Size([3]), torch.Size([3]))
    """
    s = ctx.structures
    params = [p for p in dict.fromkeys(sl.param for _l, sl, _i in s.parameter_slices(None)) if p.requires_grad]
    mask = {p: torch.zeros_like(p) for p in params}
    for param, values in s.broadcast(torch.ones(s.num_structures), role=None, fill=0.0):
        if param in mask:
            mask[param] = torch.maximum(mask[param], values.to(param.dtype).expand_as(param))
    loss = ctx.loss_fn(ctx.model(inputs), labels)
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    grad_of = {p: g for p, g in zip(params, grads, strict=True) if g is not None}
    first = structure_dot(s, grad_of.get)
    live = [p for p in params if p in grad_of and grad_of[p].requires_grad]
    if not live:
        return first, torch.zeros_like(first)
    theta = [p.detach() * mask[p] for p in live]
    hv = torch.autograd.grad([grad_of[p] for p in live], live, grad_outputs=theta, allow_unused=True)
    hv_of = {p: h for p, h in zip(live, hv, strict=True) if h is not None}
    return first, structure_dot(s, hv_of.get)


def bottleneck_layers(
    structures: StructureSet, scores: torch.Tensor, prune_fraction: float, threshold: float = 0.9
) -> dict[str, float]:
    """Layers that lose at least ``threshold`` of their units when the lowest ``prune_fraction`` of all units go.

    Returns ``{layer name: fraction of its units pruned}`` (SOSP's bottleneck analysis).

    Example:
        >>> import torch.nn as nn
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> s = StructureSet(net, torch.zeros(1, 2))
        >>> scores = torch.tensor([5.0, 6.0, 7.0, 0.1, 0.2])  # layer '2' first, then layer '0'
        >>> [g.name for g in s.layers], bottleneck_layers(s, scores, prune_fraction=0.4)
        (['2', '0'], {'0': 1.0})
    """
    n = structures.num_structures
    pruned = torch.zeros(n, dtype=torch.bool)
    pruned[scores.argsort()[: int(round(prune_fraction * n))]] = True
    out = {}
    for group in structures.layers:
        frac = float(pruned[group.span].float().mean())
        if frac >= threshold:
            out[group.name] = frac
    return out


@register_criterion("sosp_h")
class SOSPH(Criterion):
    """SOSP-H: |theta_s^T g_s + 1/2 theta_s^T (H theta)_s|, one HVP per batch, global ranking.

    Example:
        >>> SOSPH().needs == {"data", "grads", "hvp"}
        True
    """

    needs = frozenset({"data", "grads", "hvp"})
    paper = (
        "Nonnenmacher et al., SOSP: Efficiently Capturing Global Correlations by Second-Order Structured "
        "Pruning, ICLR 2022"
    )

    class Options(BaseModel):
        """Options of :class:`SOSPH`."""

        model_config = ConfigDict(extra="forbid")
        batches: int = Field(4, ge=1, description="calibration batches (one HVP each)")

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        s = ctx.structures
        first = torch.zeros(s.num_structures, dtype=torch.float64)
        second = torch.zeros_like(first)
        count = 0
        with eval_mode(ctx.model):
            for inputs, labels in ctx.calibration_batches(self.options.batches):
                f, q = sosp_terms(ctx, inputs, labels)
                first += f
                second += q
                count += 1
        ctx.model.zero_grad(set_to_none=True)
        first = all_reduce_mean(first / max(count, 1))
        second = all_reduce_mean(second / max(count, 1))
        return (first + 0.5 * second).abs().float()
