"""What a pruning method sees: a narrow context instead of the whole Pruner.

A method reads the structures, the budget in force (MACs or latency: :meth:`PruneContext.budget`
and :meth:`PruneContext.cost_of` speak the unit of ``ctx.cost``), the selection schedule, the
model, the optimizer and calibration data from here, and acts through the decay engine's verbs
(``start``, ``committed``, ``available``, ``releases``) and :meth:`PruneContext.add_channel_multiplier`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from ..decay import DecayEngine
from ..structure import StructureSet
from ..structure.channel_params import ChannelMultiplier, add_channel_multiplier, remove_channel_multiplier
from ..structure.cost import BudgetCost, MacsCost
from .schedule import SelectionSchedule

__all__ = ["PruneContext"]

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]


@dataclass
class PruneContext:
    """The pruning state a method may read and the verbs it may use.

    Attributes:
        model: The model being pruned (modified in place).
        structures: Its prunable channel groups.
        decay: The zeroing policy's engine; methods use ``start(ids, step)``, ``committed()``,
            ``available(step)`` and ``releases``.
        schedule: The selection points.
        base_macs: MACs of the unpruned model.
        final_macs: MACs the pruned model may keep at the end.
        loss_fn: ``loss_fn(outputs, labels)`` for data passes (cross-entropy by default).
        calibration_data: Batches ``(inputs, labels)`` for data-pass criteria (None: none).
        optimizer: The training optimizer, once bound.
        step: Optimizer steps taken so far.
        cost: What the budget counts (default: MACs, :class:`~decayprune.structure.cost.MacsCost`).
        base_cost: ``cost`` of the unpruned model (default: ``base_macs`` when the cost is MACs).
        final_cost: ``cost`` the pruned model may keep at the end (default: ``final_macs`` likewise).
        width_multiple: Channels kept per pruned layer are a multiple of this (1: any width).
    """

    model: nn.Module
    structures: StructureSet
    decay: DecayEngine
    schedule: SelectionSchedule
    base_macs: float
    final_macs: float
    loss_fn: LossFn
    calibration_data: Iterable[Any] | None = None
    optimizer: torch.optim.Optimizer | None = None
    step: int = 0
    multipliers: list[ChannelMultiplier] = field(default_factory=list)
    cost: BudgetCost = None  # type: ignore[assignment]  # None: MACs, set in __post_init__
    base_cost: float = math.nan
    final_cost: float = math.nan
    width_multiple: int = 1

    def __post_init__(self) -> None:
        if self.cost is None:
            self.cost = MacsCost(self.structures)
        if math.isnan(self.base_cost) or math.isnan(self.final_cost):
            if self.cost.kind != "macs":
                raise ValueError(f"a {self.cost.kind} cost needs base_cost and final_cost")
            self.base_cost = self.base_macs if math.isnan(self.base_cost) else self.base_cost
            self.final_cost = self.final_macs if math.isnan(self.final_cost) else self.final_cost

    # ------------------------------------------------------------------ budget
    def macs_budget(self, step: int | None = None) -> float:
        """Absolute MACs the model may keep at ``step`` (default: now)."""
        return self.schedule.macs_budget(self.step if step is None else step, self.base_macs, self.final_macs)

    def committed_macs(self) -> float:
        """MACs once every committed structure (pruned or decaying) is gone."""
        return self.structures.macs(self.decay.committed())

    def budget(self, step: int | None = None) -> float:
        """The cost (unit of ``ctx.cost``: MACs or ms) the model may keep at ``step`` (default: now)."""
        return self.schedule.macs_budget(self.step if step is None else step, self.base_cost, self.final_cost)

    def cost_of(self, pruned: torch.Tensor) -> float:
        """The budget's cost of the model with the bool mask ``pruned`` of structures removed."""
        return self.cost(pruned)

    def committed_cost(self) -> float:
        """The budget's cost once every committed structure (pruned or decaying) is gone."""
        return self.cost_of(self.decay.committed())

    # ------------------------------------------------------------------ data
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

    # ------------------------------------------------------------------ adding parameters
    def add_channel_multiplier(
        self, module_name: str, init: torch.Tensor | None = None, name: str = "channel_gate"
    ) -> ChannelMultiplier:
        """Scale the output channels of ``module_name`` by a new trainable vector (e.g. a gate).

        The vector joins its structures as a producer slice (so decay, keep-at-zero and norms
        include it), is registered on the module (state dicts and checkpoints see it), and is
        added to the bound optimizer. :meth:`fold_channel_multipliers` folds it into the
        module's weights before compaction; the Pruner does so in ``compact()``.
        """
        multiplier = add_channel_multiplier(self.structures, module_name, init, name=name)
        if self.optimizer is not None:
            reference = self.optimizer.param_groups[0]
            self.optimizer.add_param_group(
                {**{k: v for k, v in reference.items() if k != "params"}, "params": [multiplier.param]}
            )
        self.multipliers.append(multiplier)
        return multiplier

    def fold_channel_multipliers(self) -> None:
        """Fold every added multiplier into its module and remove it (outputs unchanged)."""
        while self.multipliers:
            multiplier = self.multipliers.pop()
            if self.optimizer is not None:
                for group in self.optimizer.param_groups:
                    group["params"] = [p for p in group["params"] if p is not multiplier.param]
                self.optimizer.state.pop(multiplier.param, None)
            remove_channel_multiplier(self.structures, multiplier, fold=True)
