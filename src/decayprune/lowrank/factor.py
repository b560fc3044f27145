"""Factor low-rank layers into two thin ones, so the MACs really drop (LRPET's last step).

A Linear ``[out, in]`` of rank r becomes ``Linear(in, r, bias=False) -> Linear(r, out)``; a Conv2d
``[out, in, kh, kw]`` becomes ``Conv2d(in, r, (kh, kw), stride, padding, dilation, bias=False) ->
Conv2d(r, out, 1)``. With ``W = U S V^T`` the first layer holds ``sqrt(S_r) V_r^T`` and the second
``U_r sqrt(S_r)`` (the product is the rank-r truncation, so a weight already of rank r is
reproduced up to rounding). Factoring pays when ``r * (in*k + out) < out * in*k``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .svd import as_matrix, layer_weight

__all__ = ["factorize", "factorize_layer"]


@torch.no_grad()
def factorize_layer(module: nn.Module, rank: int) -> nn.Sequential:
    """Two thin layers whose composition is ``module`` truncated to rank ``rank``.

    Example:
        >>> lin = nn.Linear(8, 6)
        >>> thin = factorize_layer(lin, 6)
        >>> x = torch.randn(3, 8)
        >>> bool(torch.allclose(thin(x), lin(x), atol=1e-5)), [m.weight.shape[0] for m in thin]
        (True, [6, 6])
    """
    weight = layer_weight(module).detach()
    u, s, vh = torch.linalg.svd(as_matrix(weight).double(), full_matrices=False)
    root = s[:rank].sqrt()
    first = (root.view(-1, 1) * vh[:rank]).to(weight.dtype)
    second = (u[:, :rank] * root).to(weight.dtype)
    bias = getattr(module, "bias", None)
    a: nn.Module
    b: nn.Linear | nn.Conv2d
    if isinstance(module, nn.Linear):
        a = nn.Linear(module.in_features, rank, bias=False)
        b = nn.Linear(rank, module.out_features, bias=bias is not None)
        layer_weight(a).copy_(first)
        b.weight.copy_(second)
    elif isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros":
        geometry: dict[str, Any] = {
            "kernel_size": module.kernel_size,
            "stride": module.stride,
            "padding": module.padding,
            "dilation": module.dilation,
        }
        a = nn.Conv2d(module.in_channels, rank, bias=False, **geometry)
        b = nn.Conv2d(rank, module.out_channels, 1, bias=bias is not None)
        layer_weight(a).copy_(first.view(rank, *weight.shape[1:]))
        b.weight.copy_(second.view(module.out_channels, rank, 1, 1))
    else:
        raise ValueError(f"cannot factor a {module!r} (Linear and ungrouped zero-padded Conv2d only)")
    if isinstance(bias, torch.Tensor) and b.bias is not None:
        b.bias.copy_(bias.detach())
    return nn.Sequential(a, b).to(device=weight.device, dtype=weight.dtype)


def factorize(model: nn.Module, ranks: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """Replace each named layer of ``model`` by its two-layer factorization, in place.

    Returns per layer ``(weights before, weights after)``. Layers where factoring would not
    reduce the weights are left as they are (and not listed).
    """
    modules = dict(model.named_modules())
    done: dict[str, tuple[int, int]] = {}
    for name, rank in ranks.items():
        module = modules[name]
        rows, cols = as_matrix(layer_weight(module)).shape
        if rank * (rows + cols) >= rows * cols:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, child, factorize_layer(module, rank))
        done[name] = (rows * cols, rank * (rows + cols))
    return done
