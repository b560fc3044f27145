"""Sparsity targets: which weights to start removing so that a mask reaches a target sparsity.

A target is a fraction of the masked weights, either *global* (one threshold over every layer)
or *per layer* (a fraction per layer, or a mapping from layer name to fraction). Scores are
``[S]`` per weight; the smallest go first. Weights already committed (pruned or decaying) count
toward the target and are never selected twice.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .masks import ElementMasks

__all__ = ["layer_targets", "select_n_of_m", "select_smallest"]


def layer_targets(units: ElementMasks, sparsity: float | Mapping[str, float]) -> list[float]:
    """The target sparsity of each masked layer (a float: the same for all).

    Example:
        >>> import torch.nn as nn
        >>> m = ElementMasks(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
        >>> layer_targets(m, {"0": 0.5})
        [0.5, 0.0]
    """
    if isinstance(sparsity, Mapping):
        unknown = sorted(set(sparsity) - set(units.names))
        if unknown:
            raise ValueError(f"sparsity names layers {unknown} that are not masked (masked: {units.names})")
        values = [float(sparsity.get(name, 0.0)) for name in units.names]
    else:
        values = [float(sparsity)] * units.num_groups
    for name, value in zip(units.names, values):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"sparsity of layer {name!r} must be in [0, 1), got {value}")
    return values


def select_smallest(
    units: ElementMasks,
    scores: torch.Tensor,
    sparsity: float | Mapping[str, float],
    *,
    scope: str = "global",
    committed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Ids of the smallest-scored uncommitted weights to add so the target is reached.

    Args:
        units: The masks.
        scores: ``[S]`` score per weight (smallest pruned first).
        sparsity: Target fraction (global or per layer), or ``{layer: fraction}`` (per layer).
        scope: ``"global"`` (one ranking over every layer; needs a float target) or ``"layer"``.
        committed: ``[S]`` bool of weights already pruned or decaying (default: ``units.pruned``).

    Example:
        >>> import torch.nn as nn
        >>> m = ElementMasks(nn.Linear(4, 1, bias=False))
        >>> select_smallest(m, torch.tensor([3.0, 1.0, 2.0, 4.0]), 0.5).tolist()
        [1, 2]
    """
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    if scores.shape != (units.num_structures,):
        raise ValueError(f"scores have shape {tuple(scores.shape)}, expected ({units.num_structures},)")
    done = (units.pruned if committed is None else committed).cpu().bool()
    scores = scores.detach().float().cpu()
    if scope == "global":
        if isinstance(sparsity, Mapping):
            raise ValueError("a per-layer sparsity mapping needs scope='layer'")
        return _smallest(scores, done, torch.arange(units.num_structures), float(sparsity))
    picked = [
        _smallest(scores, done, torch.arange(units.starts[i], units.starts[i + 1]), target)
        for i, target in enumerate(layer_targets(units, sparsity))
    ]
    return torch.cat(picked)


def _smallest(scores: torch.Tensor, done: torch.Tensor, ids: torch.Tensor, target: float) -> torch.Tensor:
    if not 0.0 <= target < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {target}")
    need = round(target * ids.numel()) - int(done[ids].sum())
    free = ids[~done[ids]]
    if need <= 0 or not free.numel():
        return torch.zeros(0, dtype=torch.long)
    order = torch.argsort(scores[free], stable=True)[:need]
    return free[order].sort().values


def select_n_of_m(units: ElementMasks, scores: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """N:M semi-structured pattern: in every ``m`` consecutive weights of a row, keep the ``n`` best.

    A row is one output's weights (``[out, in * kernel]``, flatten order); the ``m - n`` smallest
    scores of each group are returned. Layers whose row length is not a multiple of ``m`` are
    left dense (their weights are never returned).

    Example:
        >>> import torch.nn as nn
        >>> m = ElementMasks(nn.Linear(4, 1, bias=False))
        >>> select_n_of_m(m, torch.tensor([0.4, 0.1, 0.3, 0.2])).tolist()
        [1, 3]
    """
    if not 0 < n < m:
        raise ValueError(f"need 0 < n < m, got {n}:{m}")
    picked = []
    scores = scores.detach().float().cpu()
    for i, w in enumerate(units.weights):
        if (w.numel() // w.shape[0]) % m:
            continue
        span = units.span(i)
        groups = scores[span].view(-1, m)
        order = torch.argsort(groups, dim=1, stable=True)[:, : m - n]
        base = torch.arange(groups.shape[0]).view(-1, 1) * m + span.start
        picked.append((base + order).flatten())
    return torch.cat(picked).sort().values if picked else torch.zeros(0, dtype=torch.long)
