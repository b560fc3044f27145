"""DepGraph's sparse-learning regularisers, as gradient terms added after ``loss.backward()``.

``depgraph`` (the default; Fang et al., CVPR 2023, eq. 5, as Torch-Pruning's
``GroupNormPruner.regularize(model, alpha=2**4, bias=False)``): for every structure ``k`` of a
layer group, with ``I_k`` the square root of its group importance (:func:`group_magnitude`),
``gamma_k = alpha ** ((I_max - I_k) / (I_max - I_min))`` over the group, and
``grad += reg * gamma_k * w`` on its conv / linear rows, the next layers' input columns and its
BN weight (biases and BN beta only with ``bias=True``): a squared-L2 shrinkage up to ``alpha``
times stronger on the least important groups. ``group_lasso`` (decayprune's earlier form):
``grad += reg * x / ||x_s||`` on every coupled slice, the gradient of ``reg * sum_s ||x_s||``.

Example:
    >>> import torch, torch.nn as nn
    >>> from decayprune.structure import StructureSet
    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> s = StructureSet(net, torch.randn(1, 2), ignore_classifier=False)
    >>> for p in net.parameters(): p.grad = torch.zeros_like(p)
    >>> depgraph_regularize(s, 0.1)
    >>> bool(net[0].weight.grad.abs().sum() > 0), float(net[0].bias.grad.abs().sum())
    (True, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from ..criteria.magnitude import group_magnitude
from ..criteria.reduce import CONV_OR_LINEAR, module_of
from ..structure import StructureSet

__all__ = ["depgraph_gammas", "depgraph_regularize", "group_lasso_regularize"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def depgraph_gammas(
    structures: StructureSet, alpha: float = 16.0, live: torch.Tensor | None = None, bias: bool = False
) -> torch.Tensor:
    """``gamma_k`` of every structure, in ``[1, alpha]`` (0 where ``live`` is False).

    A layer group whose live importances are all equal gets ``gamma = 1`` (Torch-Pruning would
    divide 0 by 0 there).
    """
    imp = group_magnitude(structures, reduction="mean", include_consumers=True, bias=bias).double().sqrt()
    layer_of = structures.layer_of
    n_layers = len(structures.layers)
    live = torch.ones_like(imp, dtype=torch.bool) if live is None else live.cpu()
    big = torch.finfo(imp.dtype).max
    hi = torch.full((n_layers,), -big, dtype=imp.dtype).scatter_reduce(
        0, layer_of, torch.where(live, imp, torch.full_like(imp, -big)), "amax"
    )
    lo = torch.full((n_layers,), big, dtype=imp.dtype).scatter_reduce(
        0, layer_of, torch.where(live, imp, torch.full_like(imp, big)), "amin"
    )
    span = (hi - lo)[layer_of]
    frac = torch.where(span > 0, (hi[layer_of] - imp) / span.clamp_min(1e-300), torch.zeros_like(imp))
    gamma = torch.pow(torch.tensor(float(alpha), dtype=imp.dtype), frac)
    return torch.where(live, gamma, torch.zeros_like(gamma)).float()


def _is_target(module: nn.Module, name: str, bias: bool) -> bool:
    if isinstance(module, CONV_OR_LINEAR + _NORMS):
        return name == "weight" or (bias and name == "bias")
    return False


def _add_scaled(structures: StructureSet, coef_of: torch.Tensor, keep: Callable[[nn.Module, str], bool] | None) -> None:
    for _layer, sl, ids in structures.parameter_slices():
        grad = sl.param.grad
        if grad is None:
            continue
        if keep is not None and not keep(module_of(structures.model, sl.name), sl.name.rpartition(".")[2]):
            continue
        coef = torch.zeros(sl.param.shape[sl.dim], device=grad.device, dtype=grad.dtype)
        coef[sl.positions.to(grad.device)] = coef_of.to(grad.device, grad.dtype)[ids.to(grad.device)]
        shape = [1] * grad.dim()
        shape[sl.dim] = -1
        grad.add_(sl.param.detach() * coef.view(shape))


@torch.no_grad()
def depgraph_regularize(
    structures: StructureSet,
    reg: float,
    alpha: float = 16.0,
    live: torch.Tensor | None = None,
    bias: bool = False,
) -> None:
    """Add DepGraph's ``reg * gamma_k * w`` to the gradients of the structures ``live`` (default all)."""
    gamma = depgraph_gammas(structures, alpha, live, bias)
    _add_scaled(structures, reg * gamma, lambda module, name: _is_target(module, name, bias))


@torch.no_grad()
def group_lasso_regularize(structures: StructureSet, reg: float, live: torch.Tensor | None = None) -> None:
    """Add the group-lasso gradient ``reg * x / ||x_s||`` to every coupled slice of the ``live`` structures."""
    inv_norm = 1.0 / structures.group_sq_norms(include_consumers=True).sqrt().clamp_min(1e-8)
    if live is not None:
        inv_norm = torch.where(live.to(inv_norm.device), inv_norm, torch.zeros_like(inv_norm))
    _add_scaled(structures, reg * inv_norm, None)
