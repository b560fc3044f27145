"""Scoring methods on a budget schedule: the common shape of most pruning methods.

At each of ``iterative_steps`` evenly spaced selection points the MACs budget tightens
linearly from the base model's to the final target; the method scores structures and the
lowest-scored are handed to the zeroing policy until the budget is met. After a
self-rectifying release the budget is re-filled at the next step with the next-best
candidates (released ones sit out their cool-down).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .base import PruningMethod, fill_to_budget

if TYPE_CHECKING:
    from ..pruner import Pruner


class ScheduledMethod(PruningMethod):
    """Base for methods that rank structures by a score and prune on the pruner's schedule.

    Subclasses implement :meth:`scores` (low = less important).
    """

    ranking = "global"

    def __init__(self, ranking: str | None = None, max_layer_ratio: float = 0.9) -> None:
        if ranking is not None:
            self.ranking = ranking
        if self.ranking not in ("global", "layer"):
            raise ValueError(f"ranking must be 'global' or 'layer', got {self.ranking!r}")
        if not 0.0 < max_layer_ratio <= 1.0:
            raise ValueError(f"max_layer_ratio must be in (0, 1], got {max_layer_ratio!r}")
        self.max_layer_ratio = max_layer_ratio
        self._refill = False

    def scores(self, pruner: "Pruner") -> torch.Tensor:
        """Importance of every structure, shape ``[S]``."""
        raise NotImplementedError

    def select(self, pruner: "Pruner", step: int) -> torch.Tensor | None:
        scheduled = pruner.is_selection_step(step)
        if not (scheduled or self._refill):
            return None
        self._refill = False
        target = pruner.target_macs_at(step)
        if pruner.structures.macs(pruner.engine.committed()) <= target:
            return None
        scores = self.scores(pruner)
        picked = fill_to_budget(pruner, scores, target, pruner.engine.available(step),
                                ranking=self.ranking, max_layer_ratio=self.max_layer_ratio)
        committed = pruner.engine.committed()
        committed[picked] = True
        if pruner.structures.macs(committed) > target:
            # Not enough fresh candidates (e.g. many releases cooling down): the budget wins over
            # the cool-down, so released structures may be picked again, lowest score first.
            extra = fill_to_budget(pruner, scores, target, ~committed, ranking=self.ranking,
                                   max_layer_ratio=self.max_layer_ratio, committed=committed)
            picked = torch.cat([picked, extra])
        return picked

    def on_release(self, pruner: "Pruner", ids: list[int], step: int) -> None:
        self._refill = True

    def state_dict(self) -> dict:
        return {"refill": self._refill}

    def load_state_dict(self, state: dict) -> None:
        self._refill = bool(state.get("refill", False))
