"""Iterative importance deactivation: switch connections off round by round while accuracy holds.

Each round deactivates the ``fraction`` of the still-active connections with the smallest
importance, through the decay engine (so ``sp`` decays them over N steps while the caller
retrains), then the caller retrains and evaluates. When accuracy falls more than ``tolerance``
points below the reference, the last round is undone (weights, mask, engine and optimizer state
restored) and the search stops: what is left is the smallest subnetwork found that keeps
accuracy. Importance (our choice; the seed paper's abstract names "a simple importance score"):
``"grad_weight"``, ``|g * w|`` accumulated over the steps since the last round (call
:meth:`IterativeDeactivation.accumulate` after each backward), or ``"magnitude"``, ``|w|``.
Works with any optimizer (SGD, Adam): the masks hold its per-element state at zero.
"""

from __future__ import annotations

import copy

import torch

from ..decay import DecayEngine
from .masks import ElementMasks
from .targets import select_smallest

__all__ = ["IterativeDeactivation"]


class IterativeDeactivation:
    """The round-by-round search on ``units`` through ``engine``.

    Args:
        units: The element masks.
        engine: Its policy zeroes each round's connections.
        fraction: Share of the active connections deactivated per round.
        tolerance: Accuracy points (below the reference) a round may lose.
        importance: ``"grad_weight"`` or ``"magnitude"``.

    Example:
        >>> import torch.nn as nn
        >>> from decayprune.config import DecaySettings
        >>> net = nn.Linear(10, 2)
        >>> m = ElementMasks(net)
        >>> engine = DecayEngine(m, DecaySettings(policy="oneshot"))
        >>> search = IterativeDeactivation(m, engine, fraction=0.5, importance="magnitude")
        >>> search.begin(90.0); len(search.deactivate(step=0)), search.check(89.5), round(m.sparsity(), 2)
        (10, True, 0.5)
        >>> len(search.deactivate(step=1)), search.check(80.0), round(m.sparsity(), 2), search.done
        (5, False, 0.5, True)
    """

    def __init__(
        self,
        units: ElementMasks,
        engine: DecayEngine,
        *,
        fraction: float = 0.2,
        tolerance: float = 1.0,
        importance: str = "grad_weight",
    ) -> None:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        if importance not in ("grad_weight", "magnitude"):
            raise ValueError(f"importance must be 'grad_weight' or 'magnitude', got {importance!r}")
        self.units, self.engine = units, engine
        self.fraction, self.tolerance, self.importance = fraction, tolerance, importance
        self.reference: float | None = None
        self.done = False
        self.history: list[dict] = []
        self._scores = torch.zeros(units.num_structures, device=units.device)
        self._snapshot: dict | None = None

    @torch.no_grad()
    def accumulate(self) -> None:
        """Add this backward's ``|g * w|`` to the importance (``grad_weight``)."""
        if self.importance == "grad_weight":
            grads = (w.grad if w.grad is not None else torch.zeros_like(w) for w in self.units.weights)
            self._scores += self.units.per_weight((g * w).abs() for g, w in zip(grads, self.units.weights))

    def begin(self, accuracy: float) -> None:
        """The reference accuracy (of the model before any round)."""
        self.reference = accuracy

    def scores(self) -> torch.Tensor:
        """The importance of every connection now, ``[S]``."""
        return self.units.producer_norms() if self.importance == "magnitude" else self._scores.clone()

    def deactivate(self, step: int) -> torch.Tensor:
        """Start one round at ``step``: the least important ``fraction`` of the active connections."""
        if self.reference is None:
            raise RuntimeError("call begin(accuracy) before the first round")
        if self.done:
            return torch.zeros(0, dtype=torch.long)
        self._snapshot = self._state()
        committed = self.engine.committed()
        target = 1.0 - (1.0 - self.fraction) * (1.0 - float(committed.float().mean()))
        ids = select_smallest(
            self.units, self.scores(), min(target, 1 - 1 / self.units.num_structures), committed=committed
        )
        self.engine.start(ids, step)
        self._scores.zero_()
        return ids

    def check(self, accuracy: float) -> bool:
        """After retraining: True to go on; False (and the round undone) once accuracy fell too far."""
        if self.reference is None:
            raise RuntimeError("call begin(accuracy) before check")
        kept = accuracy >= self.reference - self.tolerance
        self.history.append(
            {"sparsity": self.units.sparsity(self.engine.committed()), "accuracy": accuracy, "kept": kept}
        )
        if not kept and self._snapshot is not None:
            self._restore(self._snapshot)
            self.done = True
        return kept

    def _state(self) -> dict:
        optimizer = self.engine.optimizer
        return {
            "weights": [w.detach().clone() for w in self.units.weights],
            "pruned": self.units.pruned.clone(),
            "engine": copy.deepcopy(self.engine.state_dict()),
            "optimizer": copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None,
        }

    @torch.no_grad()
    def _restore(self, state: dict) -> None:
        for w, saved in zip(self.units.weights, state["weights"]):
            w.copy_(saved)
        self.engine.load_state_dict(state["engine"])
        self.units.set_mask(state["pruned"])
        if state["optimizer"] is not None and self.engine.optimizer is not None:
            self.engine.optimizer.load_state_dict(state["optimizer"])
