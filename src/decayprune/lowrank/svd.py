"""Rank-r projection of a weight matrix, with LRPET's energy transfer, as pure tensor functions.

A Linear weight is its own matrix; a Conv2d weight ``[out, in, kh, kw]`` is viewed as
``[out, in * kh * kw]``. The projection is the truncated SVD (Eckart-Young: the closest rank-r
matrix in Frobenius norm). *Energy transfer* (LRPET) gives the energy (sum of squares) of the
removed singular values back to the kept ones, uniformly: each kept ``s_i^2`` grows by
``E_removed / r``, so the Frobenius norm is unchanged. A *decay* (DPM on ranks) scales the tail
singular values instead of cutting them.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["as_matrix", "full_rank", "layer_weight", "project"]


def layer_weight(module: nn.Module) -> torch.Tensor:
    """``module.weight`` (``TypeError`` if it has none)."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__} has no weight tensor")
    return weight


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` viewed as ``[out, -1]`` (a copy if not contiguous)."""
    return weight.reshape(weight.shape[0], -1)


def full_rank(weight: torch.Tensor) -> int:
    """``min(out, in * kernel)``: the largest rank ``weight`` can have."""
    m = as_matrix(weight)
    return min(m.shape)


def project(
    weight: torch.Tensor,
    rank: int,
    *,
    energy_transfer: bool = True,
    tail_scale: float | torch.Tensor = 0.0,
    row_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project ``weight`` onto rank ``rank``; returns (new weight, its singular values, descending).

    Args:
        weight: Linear or Conv weight.
        rank: Singular values kept (``1 .. full_rank``).
        energy_transfer: Give the removed energy back to the kept values (Frobenius norm kept).
        tail_scale: Factor on the values past ``rank`` (0: cut; in (0, 1]: a partial decay, whose
            removed energy is transferred the same way); a float, or one factor per tail value.
        row_scale: ``[out]`` factors (BN rectification): project ``diag(row_scale) @ W`` and divide
            back, so the approximation is optimal for the normalised outputs.

    Example:
        >>> w = torch.randn(6, 4, 3, 3)
        >>> p, s = project(w, 2)
        >>> int(torch.linalg.matrix_rank(p.reshape(6, -1))), bool(torch.isclose(p.norm(), w.norm()))
        (2, True)
    """
    full = full_rank(weight)
    if not 1 <= rank <= full:
        raise ValueError(f"rank must be in 1 .. {full} for a {tuple(weight.shape)} weight, got {rank}")
    matrix = as_matrix(weight.detach()).double()
    scale = None if row_scale is None else row_scale.detach().double().view(-1, 1)
    if scale is not None:
        matrix = matrix * scale
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    tail = torch.arange(s.numel(), device=s.device) >= rank
    factors = torch.ones_like(s)
    factors[rank:] = torch.as_tensor(tail_scale, dtype=s.dtype, device=s.device)
    new = s * factors
    if energy_transfer:
        lost = (s.square() - new.square()).sum()
        new = torch.where(tail, new, (s.square() + lost / rank).sqrt())
    out = (u * new) @ vh
    if scale is not None:
        out = out / scale
    return out.to(weight.dtype).reshape(weight.shape), new.to(weight.dtype)
