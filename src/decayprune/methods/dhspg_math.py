"""The per-group arithmetic of DHSPG (OTOv2, Chen et al., ICLR 2023) on plain tensors.

Every function takes per-group aggregates over a group's variables ``x`` and its search
direction ``d`` (the base optimizer's step direction): ``xx = ||x||^2``, ``xd = <x, d>``,
``dd = ||d||^2`` (shape ``[G]``), so they can be checked by hand on small tensors and do not
know about models or structures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "adaptive_lambda",
    "cap_projections",
    "cosine_x_d",
    "half_space_mask",
    "redundancy_scores",
    "top_k_redundant",
]

SAFE = 1e-8


def cosine_x_d(xx: torch.Tensor, xd: torch.Tensor, dd: torch.Tensor) -> torch.Tensor:
    """``cos(-x, -d) = <x, d> / (||x|| ||d||)`` per group (0 where either norm is 0).

    Example:
        >>> cosine_x_d(torch.tensor([4.0, 1.0]), torch.tensor([-2.0, 0.0]), torch.tensor([1.0, 0.0])).tolist()
        [-1.0, 0.0]
    """
    denom = xx.sqrt() * dd.sqrt()
    return torch.where(denom > 0, xd / denom.clamp_min(SAFE), torch.zeros_like(xd))


def redundancy_scores(cos: torch.Tensor, avg_norm: torch.Tensor) -> torch.Tensor:
    """OTOv2's partition score: ``0.5 * normalize(cos(-x, -d)) + 0.5 * normalize(1 / avg_norm)``.

    ``normalize`` divides a vector by its L2 norm (over all groups); ``avg_norm`` is
    ``||x|| / group size``. Higher means more redundant: a small group whose negative
    gradient points toward the origin.

    Example:
        >>> s = redundancy_scores(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))
        >>> [round(v, 4) for v in s.tolist()]
        [0.8536, 0.3536]
    """
    inv = 1.0 / (avg_norm + 1e-6)
    return 0.5 * F.normalize(cos, dim=0) + 0.5 * F.normalize(inv, dim=0)


def top_k_redundant(
    scores: torch.Tensor, k: int, layer_of: torch.Tensor | None = None, group_divisible: int = 1
) -> torch.Tensor:
    """The ``k`` highest-scored groups as a bool mask, optionally rounded per layer.

    With ``group_divisible > 1`` (and ``layer_of``, the layer index of each group) the number
    of groups each layer keeps is rounded to a multiple of ``group_divisible`` (at least one
    multiple; the layer's highest-scored groups are the redundant ones) and a layer with no
    more than ``group_divisible`` groups keeps all of them, as OTOv2 does.

    Example:
        >>> top_k_redundant(torch.tensor([0.1, 0.9, 0.5, 0.7]), 2).tolist()
        [False, True, False, True]
        >>> # 6 groups, k = 3 keeps 3, rounded to a multiple of 2 -> keeps 4, 2 redundant
        >>> one_layer = torch.zeros(6, dtype=torch.long)
        >>> top_k_redundant(torch.tensor([0.1, 0.9, 0.5, 0.7, 0.2, 0.3]), 3, one_layer, 2).tolist()
        [False, True, False, True, False, False]
    """
    if not 0 <= k <= scores.numel():
        raise ValueError(f"k must be in [0, {scores.numel()}], got {k}")
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    if k > 0:
        mask[torch.topk(scores.cpu(), k).indices] = True
    if group_divisible <= 1 or layer_of is None:
        return mask
    rounded = torch.zeros_like(mask)
    for lid in torch.unique(layer_of).tolist():
        where = (layer_of == lid).nonzero().flatten()
        if where.numel() <= group_divisible:
            continue
        kept = where.numel() - int(mask[where].sum())
        kept = min(max(round(kept / group_divisible), 1) * group_divisible, where.numel())
        order = torch.argsort(scores[where].cpu(), descending=True, stable=True)
        rounded[where[order[: where.numel() - kept]]] = True
    return rounded


def adaptive_lambda(
    xx: torch.Tensor, xd: torch.Tensor, dd: torch.Tensor, lmbda: float, amplify: float, hat_coeff: float
) -> torch.Tensor:
    """DHSPG's per-group regularisation coefficient ``lambda_g``.

    Where ``<x, d> < 0`` (the step ``-d`` pushes the group away from the origin), the lower
    bound ``lb = -<x, d> / ||x||`` is the smallest coefficient whose half-step shrinks the group
    toward the origin, and ``ub = -||d||^2 ||x|| / <x, d>`` the largest that keeps the direction
    a descent one. ``lambda_g = clip(amplify * lb, lambda, lambda * hat_coeff)``, replaced by the
    midpoint ``(lb + ub) / 2`` when it reaches ``ub``. Elsewhere ``lambda_g = lambda``.

    Example:
        >>> # ||x|| = 1, <x, d> = -0.5, ||d|| = 1: lb = 0.5, ub = 2, amplify*lb = 1 -> clipped to [0.1, 10]
        >>> adaptive_lambda(torch.tensor([1.0]), torch.tensor([-0.5]), torch.tensor([1.0]), 0.1, 2.0, 100.0).tolist()
        [1.0]
    """
    norm = xx.sqrt()
    out = torch.full_like(xx, lmbda)
    adjust = (xd < 0) & (norm > 0)
    lb = -xd / norm.clamp_min(SAFE)
    ub = -dd * norm / torch.where(adjust, xd, -torch.ones_like(xd))
    lam = (amplify * lb).clamp(min=lmbda, max=lmbda * hat_coeff)
    lam = torch.where(lam >= ub, (lb + ub) / 2.0, lam)
    return torch.where(adjust, lam, out)


def half_space_mask(hat_dot_x: torch.Tensor, xx: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Groups the half-space projection zeroes: ``<x_hat, x> < epsilon * ||x||^2`` (non-zero ``x`` only).

    Example:
        >>> half_space_mask(torch.tensor([-0.1, 0.5, 0.0]), torch.tensor([1.0, 1.0, 0.0]), 0.0).tolist()
        [True, False, False]
    """
    return (hat_dot_x < epsilon * xx) & (xx > 0)


def cap_projections(mask: torch.Tensor, margin: torch.Tensor, max_count: int | None) -> torch.Tensor:
    """Keep at most ``max_count`` of ``mask``: those with the smallest ``margin`` (deepest in the half-space).

    Example:
        >>> cap_projections(torch.tensor([True, True, True]), torch.tensor([0.3, -1.0, 0.1]), 2).tolist()
        [False, True, True]
    """
    if max_count is None or int(mask.sum()) <= max_count:
        return mask
    ids = mask.nonzero().flatten()
    order = torch.argsort(margin[ids], stable=True)
    out = torch.zeros_like(mask)
    out[ids[order[:max_count]]] = True
    return out
