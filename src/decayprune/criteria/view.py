"""What a criterion sees: the units, the model, calibration batches and the loss, nothing of the run.

A :class:`ScoringView` is all :meth:`~decayprune.criteria.Criterion.score` receives. It has no
optimizer, no decay engine and no schedule, so a criterion can only rank; the method that asks for
the scores decides what to do with them. :class:`~decayprune.methods.PruneContext` extends it with
the method's verbs, and hands out a plain view (:attr:`~decayprune.methods.PruneContext.scoring`).

Example:
    >>> import torch.nn as nn
    >>> from decayprune.structure import StructureSet
    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> view = ScoringView(net, StructureSet(net, torch.zeros(1, 2)))
    >>> view.units.num_structures, [g.name for g in view.groups]
    (3, ['0'])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..structure import ChannelGroup, StructureSet

__all__ = ["LossFn", "ScoringView"]

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]


@dataclass
class ScoringView:
    """The units to score and the data to score them with.

    Attributes:
        model: The model (its parameters and gradients are read; passes leave its mode as found).
        structures: Its prunable channel groups (``units`` is the same object).
        loss_fn: ``loss_fn(outputs, labels)`` for data passes (cross-entropy by default).
        calibration_data: Batches ``(inputs, labels)`` (None: a data criterion cannot run).
    """

    model: nn.Module
    structures: StructureSet
    loss_fn: LossFn = F.cross_entropy
    calibration_data: Iterable[Any] | None = None

    @property
    def units(self) -> StructureSet:
        """The units to score (``[S]`` ids); the same object as :attr:`structures`."""
        return self.structures

    @property
    def groups(self) -> list[ChannelGroup]:
        """The channel groups, in id order (``units.layers``)."""
        return self.structures.layers

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live."""
        return next(self.model.parameters()).device

    def calibration_batches(self, limit: int | None = None) -> Iterator[tuple[Any, torch.Tensor]]:
        """Up to ``limit`` calibration batches ``(inputs, labels)``, moved to the model's device.

        Raises:
            ValueError: When the pruner was built without ``calibration_data``.
        """
        if self.calibration_data is None:
            raise ValueError("this criterion needs data: pass calibration_data=<batches> to the Pruner")
        device = self.device
        for i, (inputs, labels) in enumerate(self.calibration_data):
            if limit is not None and i >= limit:
                return
            moved = tuple(x.to(device) for x in inputs) if isinstance(inputs, (tuple, list)) else inputs.to(device)
            yield moved, labels.to(device)

    def with_batches(self, batches: Iterable[Any] | None) -> ScoringView:
        """A plain view of the same units over other calibration ``batches``."""
        return ScoringView(self.model, self.structures, self.loss_fn, batches)
