"""Budget filling: pick the lowest-scored structures until the committed set meets a budget.

Shared by every method that ranks structures (criterion + schedule). The budget is in the unit
of ``ctx.cost`` (MACs, or a measured latency; see :mod:`decayprune.structure.cost`). Two
rankings: ``global`` (one order over all layers, scores must be comparable) and ``layer``
(every layer pruned by about the same fraction). A per-layer cap keeps any layer from being
starved, and ``ctx.width_multiple`` keeps the channels *kept* per layer a multiple of a
hardware-friendly number (a layer narrower than it is not pruned).
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

import torch

from ..errors import UserError
from ..structure.cost import allowed_kept
from ..structure.prefix import smallest_prefix

if TYPE_CHECKING:
    from .context import PruneContext

__all__ = ["allowed_kept", "check_layer_caps", "fill_to_budget", "layer_cap_ratios", "snap_to_widths"]


def fill_to_budget(
    ctx: "PruneContext",
    scores: torch.Tensor,
    macs_budget: float,
    candidates: torch.Tensor,
    *,
    ranking: str = "global",
    max_layer_ratio: float = 0.9,
    committed: torch.Tensor | None = None,
    layer_caps: Mapping[str, float] | None = None,
) -> torch.Tensor:
    """Pick the lowest-scored candidates so that the committed set's cost reaches ``macs_budget``.

    Per layer, the picks stop where the channels kept would be a multiple of ``ctx.width_multiple``;
    a layer left off that grid by an earlier release (self-rectifying gives channels back) gets its
    next lowest-scored candidates too, down to the multiple below, when it has enough of them.

    Args:
        ctx: Gives the structures, the cost (``ctx.cost_of``) and what is already committed.
        scores: Importance per structure (low = prune first); comparable across layers
            when ``ranking == "global"``.
        macs_budget: Cost (unit of ``ctx.cost``: MACs or ms) the model may still have once every
            committed structure is gone.
        candidates: Bool mask of structures that may be picked.
        ranking: ``"global"`` (one ranking over all layers) or ``"layer"`` (the same fraction
            of every layer, lowest-scored first within each).
        max_layer_ratio: No layer loses more than this fraction of its structures (and every
            layer keeps at least one), so no layer is starved.
        committed: What counts as already removed (default: the engine's committed set).
        layer_caps: Per-layer limits ``{layer name or glob pattern: max pruned fraction}`` that
            tighten ``max_layer_ratio`` for the layers they name (e.g. from a sensitivity analysis);
            the first matching pattern wins.

    Returns:
        The ids to start removing (possibly empty).
    """
    structures = ctx.structures
    committed = ctx.committed() if committed is None else committed
    if ctx.cost_of(committed) <= macs_budget:
        none = torch.zeros(0, dtype=torch.long)
        return _back_on_grid(structures, scores, candidates, committed, none, ctx.width_multiple)
    caps = _layer_caps(ctx, committed, layer_cap_ratios(structures, max_layer_ratio, layer_caps))
    if ranking == "global":
        order = _global_order(scores, candidates, structures.layer_of, caps)
    elif ranking == "layer":
        order = _layer_order(ctx, scores, candidates, caps, committed)
    else:
        raise ValueError(f"ranking must be 'global' or 'layer', got {ranking!r}")
    pick = lambda k: snap_to_widths(order[:k], structures, committed, ctx.width_multiple)  # noqa: E731
    picked = _smallest_sufficient(ctx, committed, pick, order.numel(), macs_budget)
    return _back_on_grid(structures, scores, candidates, committed, picked, ctx.width_multiple)


def _back_on_grid(
    structures, scores: torch.Tensor, candidates: torch.Tensor, committed: torch.Tensor, picked: torch.Tensor, m: int
) -> torch.Tensor:
    """``picked`` plus, in every layer whose kept width would be off the grid, the lowest-scored
    remaining candidates that bring it down to the next allowed width (none when too few are left)."""
    if m <= 1:
        return picked
    gone = committed.clone()
    gone[picked] = True
    extra = []
    for layer in structures.layers:
        step = allowed_kept(layer, m)
        kept = layer.size - int(gone[layer.span].sum())
        if step == 0 or _on_grid(kept, layer.size, step) or kept <= step:
            continue
        need = kept - (kept // step) * step
        free = layer.ids[(candidates & ~gone)[layer.span]]
        if free.numel() >= need:
            extra.append(free[torch.argsort(scores[free].cpu(), stable=True)][:need])
    return torch.cat([picked, *extra]) if extra else picked


def layer_cap_ratios(structures, max_layer_ratio: float, layer_caps: Mapping[str, float] | None = None) -> list[float]:
    """The largest prunable fraction of every layer group: ``max_layer_ratio``, tightened by ``layer_caps``.

    Example:
        >>> import torch.nn as nn
        >>> from decayprune.structure import StructureSet
        >>> net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> s = StructureSet(net, torch.zeros(1, 2))
        >>> sorted(zip([l.name for l in s.layers], layer_cap_ratios(s, 0.9, {"2": 0.25})))
        [('0', 0.9), ('2', 0.25)]
    """
    ratios = []
    for layer in structures.layers:
        cap = next((v for k, v in (layer_caps or {}).items() if fnmatchcase(layer.name, k)), max_layer_ratio)
        ratios.append(min(cap, max_layer_ratio))
    return ratios


def check_layer_caps(structures, layer_caps: Mapping[str, float] | None) -> None:
    """Refuse caps outside [0, 1] or naming no layer group (a ``UserError`` listing the layer names)."""
    names = [layer.name for layer in structures.layers]
    for key, value in (layer_caps or {}).items():
        if not 0 <= float(value) <= 1:
            raise UserError(f"layer_caps[{key!r}] is {value}; a cap is the largest pruned fraction, in [0, 1]")
        if not any(fnmatchcase(name, key) for name in names):
            raise UserError(f"layer_caps names {key!r}, which matches no prunable layer; layers: {', '.join(names)}")


def _on_grid(kept: int, size: int, step: int) -> bool:
    return kept == size or (step > 0 and kept >= step and kept % step == 0)


def snap_to_widths(ids: torch.Tensor, structures, committed: torch.Tensor, width_multiple: int) -> torch.Tensor:
    """The ``ids`` (in pick order) that keep, per layer, a width allowed by ``width_multiple``.

    In each layer, the longest prefix of its picks is kept after which the layer's kept
    channels (``committed`` ones counted as gone) are a multiple of ``width_multiple``; none of
    its picks when no prefix gets there.

    Example:
        >>> import torch.nn as nn
        >>> from decayprune.structure import StructureSet
        >>> s = StructureSet(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)), torch.zeros(1, 4))
        >>> none = torch.zeros(s.num_structures, dtype=torch.bool)
        >>> snap_to_widths(torch.arange(11), s, none, 4).tolist()    # 16 - 8 = 8 kept, a multiple of 4
        [0, 1, 2, 3, 4, 5, 6, 7]
    """
    if ids.numel() == 0 or width_multiple <= 1:
        return ids
    layer_of = structures.layer_of[ids]
    keep = torch.zeros(ids.numel(), dtype=torch.bool)
    for lid in torch.unique(layer_of).tolist():
        layer = structures.layers[lid]
        where = (layer_of == lid).nonzero().flatten()
        step = allowed_kept(layer, width_multiple)
        kept_now = layer.size - int(committed[layer.span].sum())
        j = next((j for j in range(where.numel(), 0, -1) if _on_grid(kept_now - j, layer.size, step)), 0)
        keep[where[:j]] = True
    return ids[keep]


def _layer_caps(ctx: "PruneContext", committed: torch.Tensor, ratios: list[float]) -> torch.Tensor:
    s = ctx.structures
    caps = []
    for layer, ratio in zip(s.layers, ratios, strict=True):
        limit = min(int(layer.size * ratio), layer.size - 1)
        step = allowed_kept(layer, ctx.width_multiple)
        # The most that may go so that what stays is on the width grid (nothing for a layer left whole).
        limit = next((p for p in range(limit, -1, -1) if _on_grid(layer.size - p, layer.size, step)), 0)
        caps.append(max(limit - int(committed[layer.span].sum()), 0))
    return torch.tensor(caps, dtype=torch.long)


def _global_order(
    scores: torch.Tensor, candidates: torch.Tensor, layer_of: torch.Tensor, caps: torch.Tensor
) -> torch.Tensor:
    ids = candidates.nonzero().flatten()
    ids = ids[torch.argsort(scores[ids].cpu(), stable=True)]
    # Drop, per layer, the candidates beyond that layer's cap (keeps the ranking order).
    layer = layer_of[ids]
    rank_in_layer = torch.zeros_like(ids)
    for lid in torch.unique(layer).tolist():
        where = (layer == lid).nonzero().flatten()
        rank_in_layer[where] = torch.arange(where.numel())
    return ids[rank_in_layer < caps[layer]]


def _layer_order(
    ctx: "PruneContext", scores: torch.Tensor, candidates: torch.Tensor, caps: torch.Tensor, committed: torch.Tensor
) -> torch.Tensor:
    """Interleave layers so every prefix prunes each layer by about the same fraction.

    Within a layer candidates go lowest score first; across layers the next pick is the one
    whose layer would then have the smallest pruned fraction.
    """
    s = ctx.structures
    ids_all, keys_all = [], []
    for layer in s.layers:
        ids = layer.ids[candidates[layer.span]]
        ids = ids[torch.argsort(scores[ids].cpu(), stable=True)][: int(caps[layer.index])]
        already = int(committed[layer.span].sum())
        ids_all.append(ids)
        keys_all.append((already + torch.arange(1, ids.numel() + 1, dtype=torch.float64)) / layer.size)
    if not ids_all:
        return torch.zeros(0, dtype=torch.long)
    ids, keys = torch.cat(ids_all), torch.cat(keys_all)
    return ids[torch.argsort(keys, stable=True)]


def _smallest_sufficient(
    ctx: "PruneContext", committed: torch.Tensor, pick, upper: int, macs_budget: float
) -> torch.Tensor:
    """Binary search for the smallest k whose pick meets the target (or the largest allowed)."""

    def macs_with(k: int) -> float:
        mask = committed.clone()
        mask[pick(k)] = True
        return ctx.cost_of(mask)

    return pick(smallest_prefix(macs_with, upper, macs_budget))
