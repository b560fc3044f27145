"""Magnitude prune-retrain (Han et al. 2015) on element masks, to a target sparsity on a schedule.

At each scheduled step the smallest-``|w|`` uncommitted weights are handed to the decay engine
until the committed fraction reaches :func:`~decayprune.sparse.schedules.sparsity_at`; the
engine's policy decides how they reach zero (``oneshot``: Han's cut; ``sp``: a linear decay to
exactly zero in N steps; ``sp+sr``: released when their gradients resist, then replaced by the
next-smallest at the following scheduled step). Training between steps is the retraining.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..decay import DecayEngine
from .masks import ElementMasks
from .schedules import sparsity_at
from .targets import select_smallest

__all__ = ["MagnitudePruning"]


class MagnitudePruning:
    """Schedules magnitude pruning of ``units`` through ``engine``.

    Args:
        units: The element masks the engine runs on.
        engine: The decay engine (its policy: oneshot, sp or sp+sr).
        target: Final sparsity (a fraction, or ``{layer: fraction}`` with ``scope="layer"``).
        begin / end: First and last pruning step.
        kind: ``oneshot``, ``linear`` or ``cubic`` (Zhu & Gupta).
        every: Prune every ``every`` steps between ``begin`` and ``end``.
        scope: ``"global"`` or ``"layer"`` ranking.

    Example:
        >>> import torch.nn as nn
        >>> from decayprune.config import DecaySettings
        >>> net = nn.Linear(10, 1, bias=False)
        >>> m = ElementMasks(net)
        >>> prune = MagnitudePruning(m, DecayEngine(m, DecaySettings(policy="oneshot")), target=0.5, begin=0, end=0)
        >>> len(prune.after_step(0)), m.sparsity()
        (5, 0.5)
    """

    def __init__(
        self,
        units: ElementMasks,
        engine: DecayEngine,
        *,
        target: float | Mapping[str, float],
        begin: int,
        end: int,
        kind: str = "cubic",
        every: int = 1,
        scope: str = "global",
    ) -> None:
        self.units, self.engine = units, engine
        self.target, self.begin, self.end, self.kind, self.every, self.scope = target, begin, end, kind, every, scope
        sparsity_at(begin, target=0.0, begin=begin, end=end, kind=kind, every=every)  # validates the schedule

    def target_at(self, step: int) -> float | dict[str, float]:
        """The scheduled sparsity at ``step`` (per layer when the target is a mapping)."""

        def at(final: float) -> float:
            return sparsity_at(step, target=final, begin=self.begin, end=self.end, kind=self.kind, every=self.every)

        if isinstance(self.target, Mapping):
            return {name: at(value) for name, value in self.target.items()}
        return at(float(self.target))

    def due(self, step: int) -> bool:
        """True on a pruning step: ``begin``, every ``every`` steps after it, and ``end``."""
        return self.begin <= step <= self.end and ((step - self.begin) % self.every == 0 or step == self.end)

    def after_step(self, step: int) -> torch.Tensor:
        """On a pruning step, start removing the smallest weights up to the schedule; the ids started."""
        if not self.due(step):
            return torch.zeros(0, dtype=torch.long)
        ids = select_smallest(
            self.units,
            self.units.producer_norms(),
            self.target_at(step),
            scope=self.scope,
            committed=self.engine.committed(),
        )
        self.engine.start(ids, step)
        return ids
