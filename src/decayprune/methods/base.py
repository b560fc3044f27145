"""Base class, registry and budget helpers shared by every pruning method.

A *method* decides who is removed and when (criterion + cadence + budget) and may add a
training-time regulariser. It never zeroes anything itself: it hands targets to the
:class:`~decayprune.decay.DecayEngine`, whose policy (``oneshot``, ``sp``, ``sp+sr``) decides
how they reach zero. That is what makes DPM plug into every method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from ..registry import METHODS

if TYPE_CHECKING:
    from ..pruner import Pruner

def register_method(name: str) -> Callable[[type["PruningMethod"]], type["PruningMethod"]]:
    """Class decorator adding a method to :data:`decayprune.registry.METHODS` under ``name``."""
    register = METHODS.register(name)

    def wrap(cls: type[PruningMethod]) -> type[PruningMethod]:
        cls.name = name
        return register(cls)

    return wrap


def list_methods() -> list[str]:
    """Names of the registered pruning methods."""
    return METHODS.names()


def method_class(name: str) -> type["PruningMethod"]:
    """Look a method up by name, with a close-match hint for typos."""
    if name not in METHODS:
        raise ValueError(METHODS.unknown_message(name))
    return METHODS.get(name)


class PruningMethod:
    """Who is selected, when, and with which regulariser. Subclasses override the hooks they need."""

    name = "base"

    def attach(self, pruner: "Pruner") -> None:
        """Called once when the pruner is built."""

    def regularize(self, pruner: "Pruner", step: int) -> None:
        """Called after backward, before the optimizer step (e.g. to add a sparsity gradient)."""

    def select(self, pruner: "Pruner", step: int) -> torch.Tensor | None:
        """Called after each optimizer step; return structure ids to start removing now."""
        return None

    def on_release(self, pruner: "Pruner", ids: list[int], step: int) -> None:
        """Called when self-rectifying released ``ids``; the default asks for replacements."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


def fill_to_budget(
    pruner: "Pruner",
    scores: torch.Tensor,
    macs_budget: float,
    candidates: torch.Tensor,
    *,
    ranking: str = "global",
    max_layer_ratio: float = 0.9,
    committed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pick the lowest-scored candidates so that the committed set's MACs reach ``macs_budget``.

    Args:
        pruner: Gives the structures and what is already committed.
        scores: Importance per structure (low = prune first); comparable across layers
            when ``ranking == "global"``.
        macs_budget: MACs the model may still have once every committed structure is gone.
        candidates: Bool mask of structures that may be picked.
        ranking: ``"global"`` (one ranking over all layers) or ``"layer"`` (the same fraction
            of every layer, lowest-scored first within each).
        max_layer_ratio: No layer loses more than this fraction of its structures (and every
            layer keeps at least one), so no layer is starved.
        committed: What counts as already removed (default: the engine's committed set).

    Returns:
        The ids to start removing (possibly empty).
    """
    structures = pruner.structures
    committed = pruner.engine.committed() if committed is None else committed
    if structures.macs(committed) <= macs_budget:
        return torch.zeros(0, dtype=torch.long)
    caps = _layer_caps(pruner, committed, max_layer_ratio)
    if ranking == "global":
        order = _global_order(scores, candidates, structures.layer_of, caps)
    elif ranking == "layer":
        order = _layer_order(pruner, scores, candidates, caps, committed)
    else:
        raise ValueError(f"ranking must be 'global' or 'layer', got {ranking!r}")
    pick = lambda k: _round_per_layer(order[:k], structures)  # noqa: E731
    return _smallest_sufficient(pruner, committed, pick, order.numel(), macs_budget)


def _layer_caps(pruner: "Pruner", committed: torch.Tensor, max_layer_ratio: float) -> torch.Tensor:
    s = pruner.structures
    caps = []
    for layer in s.layers:
        limit = min(int(layer.size * max_layer_ratio), layer.size - 1)
        rt = s.round_to or 1
        limit = (limit // rt) * rt
        caps.append(max(limit - int(committed[layer.first : layer.first + layer.size].sum()), 0))
    return torch.tensor(caps, dtype=torch.long)


def _global_order(scores: torch.Tensor, candidates: torch.Tensor, layer_of: torch.Tensor, caps: torch.Tensor) -> torch.Tensor:
    ids = candidates.nonzero().flatten()
    ids = ids[torch.argsort(scores[ids].cpu(), stable=True)]
    # Drop, per layer, the candidates beyond that layer's cap (keeps the ranking order).
    layer = layer_of[ids]
    rank_in_layer = torch.zeros_like(ids)
    for lid in torch.unique(layer).tolist():
        where = (layer == lid).nonzero().flatten()
        rank_in_layer[where] = torch.arange(where.numel())
    return ids[rank_in_layer < caps[layer]]


def _round_per_layer(ids: torch.Tensor, structures) -> torch.Tensor:
    """Keep, per layer, a multiple of ``round_to`` of the picked ids (in pick order)."""
    rt = structures.round_to or 1
    if rt == 1 or ids.numel() == 0:
        return ids
    layer = structures.layer_of[ids]
    keep = torch.zeros(ids.numel(), dtype=torch.bool)
    for lid in torch.unique(layer).tolist():
        where = (layer == lid).nonzero().flatten()
        keep[where[: (where.numel() // rt) * rt]] = True
    return ids[keep]


def _layer_order(pruner: "Pruner", scores: torch.Tensor, candidates: torch.Tensor, caps: torch.Tensor,
                 committed: torch.Tensor) -> torch.Tensor:
    """Interleave layers so every prefix prunes each layer by about the same fraction.

    Within a layer candidates go lowest score first; across layers the next pick is the one
    whose layer would then have the smallest pruned fraction.
    """
    s = pruner.structures
    ids_all, keys_all = [], []
    for layer in s.layers:
        ids = layer.ids[candidates[layer.first : layer.first + layer.size]]
        ids = ids[torch.argsort(scores[ids].cpu(), stable=True)][: int(caps[layer.index])]
        already = int(committed[layer.first : layer.first + layer.size].sum())
        ids_all.append(ids)
        keys_all.append((already + torch.arange(1, ids.numel() + 1, dtype=torch.float64)) / layer.size)
    if not ids_all:
        return torch.zeros(0, dtype=torch.long)
    ids, keys = torch.cat(ids_all), torch.cat(keys_all)
    return ids[torch.argsort(keys, stable=True)]


def _smallest_sufficient(pruner: "Pruner", committed: torch.Tensor, pick, upper: int, macs_budget: float) -> torch.Tensor:
    """Binary search for the smallest k whose pick meets the target (or the largest allowed)."""
    s = pruner.structures

    def macs_with(k: int) -> float:
        mask = committed.clone()
        mask[pick(k)] = True
        return s.macs(mask)

    lo, hi = 0, upper
    if macs_with(hi) > macs_budget:
        return pick(hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if macs_with(mid) <= macs_budget:
            hi = mid
        else:
            lo = mid + 1
    return pick(lo)
