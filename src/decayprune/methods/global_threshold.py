"""Gate Decorator's pruning step: one global threshold over gate scores, a per-layer minimum.

A Tick prunes ``floor(p * remaining)`` channels: the lowest-scored candidates over all layers
(one threshold), skipping any whose layer would keep fewer than its floor, ``max(min_channels,
int(min_ratio * channels))`` live channels (the reference keeps ``max(1, int(0.1 * C))``),
and stopping early once the model's MACs reach the target. Optionally the score is made
FLOPs-aware (the paper's ``eta``): ``score - eta * macs_share`` with ``macs_share`` the
structure's share of the base MACs, so expensive channels go first at equal importance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..structure import StructureSet
from ..structure.prefix import smallest_prefix
from .budget import snap_to_widths

if TYPE_CHECKING:
    from .context import PruneContext

__all__ = ["channel_macs", "layer_floor", "tick_selection"]


def layer_floor(size: int, min_channels: int = 1, min_ratio: float = 0.0) -> int:
    """Channels a layer of ``size`` keeps at least: ``max(min_channels, int(min_ratio * size))``.

    Example:
        >>> layer_floor(64, 1, 0.1), layer_floor(8, 1, 0.1), layer_floor(8, 2, 0.0)
        (6, 1, 2)
    """
    return min(size, max(min_channels, int(min_ratio * size)))


def channel_macs(structures: StructureSet) -> torch.Tensor:
    """MACs removed by pruning each structure alone (float64, shape ``[S]``).

    Example:
        >>> import torch.nn as nn
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> s = StructureSet(net, torch.randn(1, 4), ignore_classifier=False)
        >>> macs = channel_macs(s); macs.shape[0] == s.num_structures, bool((macs > 0).all())
        (True, True)
    """
    n = structures.num_structures
    base = structures.macs(torch.zeros(n, dtype=torch.bool))
    out = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[i] = True
        out[i] = base - structures.macs(mask)
    return out


def tick_selection(
    ctx: "PruneContext",
    scores: torch.Tensor,
    fraction: float,
    *,
    min_channels: int = 1,
    min_ratio: float = 0.0,
    macs_floor: float | None = None,
    candidates: torch.Tensor | None = None,
) -> torch.Tensor:
    """Ids of the ``floor(fraction * remaining)`` lowest-scored candidates under one global threshold.

    Args:
        ctx: Gives the structures and the committed (pruned or decaying) set.
        scores: Score per structure (low = pruned first).
        fraction: ``p``: share of the remaining (uncommitted) channels to prune now.
        min_channels: Every layer keeps at least this many uncommitted channels.
        min_ratio: ... and at least ``int(min_ratio * size)`` of them.
        macs_floor: Stop once the committed cost (``ctx.cost_of``: MACs or latency) would reach this
            (the target); None: no stop.
        candidates: Bool mask of structures that may be picked (default: ``ctx.available()``).

    Returns:
        The picked ids in score order (possibly empty); per layer, cut where the kept channels are a
        multiple of ``ctx.width_multiple``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if min_channels < 1:
        raise ValueError(f"min_channels must be >= 1, got {min_channels}")
    s = ctx.structures
    committed = ctx.committed()
    candidates = ctx.available() if candidates is None else candidates
    wanted = int(fraction * int((~committed).sum()))
    ids = candidates.nonzero().flatten()
    ids = ids[torch.argsort(scores[ids].cpu(), stable=True)]
    room = {
        layer.index: int((~committed[layer.span]).sum()) - layer_floor(layer.size, min_channels, min_ratio)
        for layer in s.layers
    }
    picked: list[int] = []
    for sid in ids.tolist():
        if len(picked) >= wanted:
            break
        lid = int(s.layer_of[sid])
        if room[lid] > 0:
            room[lid] -= 1
            picked.append(sid)
    chosen = torch.tensor(picked, dtype=torch.long)
    pick = lambda k: snap_to_widths(chosen[:k], s, committed, ctx.width_multiple)  # noqa: E731
    if macs_floor is None or chosen.numel() == 0:
        return pick(chosen.numel())
    return pick(_prefix_reaching(ctx, committed, pick, chosen.numel(), macs_floor))


def _prefix_reaching(ctx: "PruneContext", committed: torch.Tensor, pick, upper: int, macs_floor: float) -> int:
    """Smallest k such that committing ``pick(k)`` brings the cost to ``macs_floor`` (or ``upper``)."""

    def macs_with(k: int) -> float:
        mask = committed.clone()
        mask[pick(k)] = True
        return ctx.cost_of(mask)

    return smallest_prefix(macs_with, upper, macs_floor)
