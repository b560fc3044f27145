"""Maximum redundancy from the effective rank of a layer's gradient (or activation) matrix.

Per layer group, the matrix has one row per calibration sample and one column per channel: the
loss gradient at the channel's activation (``source="grad"``) or the activation itself
(``"activation"``), averaged over positions, read at the group's first activation site (its
norm layer, else its conv / linear layer). If its effective rank is ``r`` of ``C`` columns, at
most ``r`` directions carry information, and ``1 - r / C`` is the largest fraction of the layer that
can go without losing a direction: the layer's *maximum safe pruning ratio*. The result is a
``layer_caps`` mapping that any ranking method takes (``method_options.layer_caps``), beside the
sensitivity-based caps of :func:`decayprune.caps_from_sensitivity`. With ``gone`` (units counted
as removed, e.g. those already selected), their columns are left out of the rank, so the cap is
``1 - r / C`` over what still carries information; method ``max_redundancy`` uses it layer by layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn as nn

from ..errors import UserError
from .passes import backward_passes
from .reduce import channel_dim, group_activation_sites

if TYPE_CHECKING:
    from .view import ScoringView

__all__ = ["caps_from_gradient_rank", "effective_rank"]


def effective_rank(matrix: torch.Tensor, energy: float = 0.99) -> int:
    """The fewest singular values whose squares hold ``energy`` of the matrix's squared Frobenius norm.

    Example:
        >>> effective_rank(torch.diag(torch.tensor([3.0, 1.0, 0.01])), energy=0.95)
        2
    """
    if not 0 < energy <= 1:
        raise UserError(f"energy must be in (0, 1], got {energy}")
    sv = torch.linalg.svdvals(matrix.double())
    power = sv**2
    total = float(power.sum())
    if total == 0:
        return 0
    cumulative = power.cumsum(0) / total
    return int((cumulative < energy - 1e-12).sum()) + 1


def _per_sample_matrices(ctx: "ScoringView", batches: int, source: str) -> dict[int, list[torch.Tensor]]:
    """Per layer group index, the ``[N, C]`` rows (per sample, averaged over positions) of each batch."""
    rows: dict[int, list[torch.Tensor]] = {}
    handles = []

    def reduce(value: torch.Tensor, dim: int) -> torch.Tensor:
        moved = value.detach().movedim(dim, -1)
        return moved.reshape(moved.shape[0], -1, moved.shape[-1]).mean(1).double().cpu()

    def hook_for(index: int, dim: int) -> Callable[..., None]:
        def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                return
            if source == "activation":
                rows.setdefault(index, []).append(reduce(output, dim))
            elif output.requires_grad:

                def on_grad(grad: torch.Tensor) -> None:
                    rows.setdefault(index, []).append(reduce(grad, dim))

                output.register_hook(on_grad)

        return record

    for index, group in enumerate(ctx.groups):
        module = group_activation_sites(group)[0][0]
        handles.append(module.register_forward_hook(hook_for(index, channel_dim(module))))
    try:
        backward_passes(ctx, batches, lambda: None)
    finally:
        for handle in handles:
            handle.remove()
    return rows


def caps_from_gradient_rank(
    ctx: "ScoringView",
    *,
    source: Literal["grad", "activation"] = "grad",
    energy: float = 0.99,
    batches: int = 8,
    gone: torch.Tensor | None = None,
) -> dict[str, float]:
    """``{layer name: 1 - effective rank / channels}`` of each layer group's per-sample matrix.

    Plugs into ``method_options.layer_caps`` of any ranking method (``iterative``, ``depgraph``, ...).
    ``gone`` (bool, one per unit) leaves those units' channels out of the rank: they count as
    removed, so a layer's cap never falls below its removed fraction.

    Example:
        >>> from decayprune.structure import StructureSet
        >>> from decayprune.criteria import ScoringView
        >>> net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
        >>> x = torch.randn(32, 4)
        >>> view = ScoringView(net, StructureSet(net, x[:1]), calibration_data=[(x, torch.arange(32) % 2)])
        >>> cap = caps_from_gradient_rank(view, source="activation")["0"]
        >>> 0.0 <= cap < 1.0
        True
    """
    rows = _per_sample_matrices(ctx, batches, source)
    caps = {}
    for index, group in enumerate(ctx.groups):
        if index not in rows:
            raise UserError(f"layer {group.name!r}: no {source} reached its activation in the calibration passes")
        matrix = torch.cat(rows[index])
        channels = matrix.shape[1]
        if gone is not None:
            _module, positions, ids = group_activation_sites(group)[0]
            matrix = matrix[:, positions[~gone.cpu()[ids.cpu()]]]
        if matrix.shape[0] < matrix.shape[1]:
            raise UserError(
                f"layer {group.name!r} has {matrix.shape[1]} channels but only {matrix.shape[0]} calibration "
                "samples: the effective rank could not exceed the sample count; pass more batches"
            )
        rank = effective_rank(matrix, energy)
        caps[group.name] = max(0.0, 1.0 - rank / channels)
    return caps
