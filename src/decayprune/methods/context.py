"""What a pruning method sees: a narrow context instead of the whole Pruner.

A method reads the structures, the budget in force (MACs or latency: :meth:`PruneContext.budget`
and :meth:`PruneContext.cost_of` speak the unit of ``ctx.cost``), the selection schedule, the
model, the optimizer and calibration data from here, and acts through verbs:
:meth:`PruneContext.committed`, :meth:`PruneContext.available`, :meth:`PruneContext.budget`,
:meth:`PruneContext.start` (which applies the recovery-margin guard) and
:meth:`PruneContext.add_channel_multiplier`. The decay engine itself stays with the Pruner.
Criteria get :attr:`PruneContext.scoring`, a plain :class:`~decayprune.criteria.ScoringView`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch

from ..config.prune import DecaySettings
from ..criteria.view import LossFn, ScoringView
from ..decay import DecayEngine
from ..structure.channel_params import ChannelMultiplier, add_channel_multiplier, remove_channel_multiplier
from ..structure.cost import BudgetCost, MacsCost
from .schedule import SelectionSchedule

__all__ = ["LossFn", "PruneContext"]


@dataclass(kw_only=True)
class PruneContext(ScoringView):
    """The pruning state a method may read and the verbs it may use.

    Attributes (besides the :class:`~decayprune.criteria.ScoringView` ones: ``model``,
    ``structures``, ``loss_fn``, ``calibration_data``):
        schedule: The selection points (built once per run).
        base_macs: MACs of the unpruned model.
        final_macs: MACs the pruned model may keep at the end.
        optimizer: The training optimizer, once bound.
        step: Optimizer steps taken so far.
        total_steps / recovery_fraction: The run's length and margin (for :meth:`start`'s warning).
        cost: What the budget counts (default: MACs, :class:`~decayprune.structure.cost.MacsCost`).
        base_cost: ``cost`` of the unpruned model (default: ``base_macs`` when the cost is MACs).
        final_cost: ``cost`` the pruned model may keep at the end (default: ``final_macs`` likewise).
        width_multiple: Channels kept per pruned layer are a multiple of this (1: any width).
        target_sparsity: The fraction of weights to hold at zero (methods that prune elements).
    """

    schedule: SelectionSchedule
    base_macs: float
    final_macs: float
    optimizer: torch.optim.Optimizer | None = None
    step: int = 0
    total_steps: int = 0
    recovery_fraction: float = 0.0
    target_sparsity: float | None = None
    multipliers: list[ChannelMultiplier] = field(default_factory=list)
    cost: BudgetCost = None  # type: ignore[assignment]  # None: MACs, set in __post_init__
    base_cost: float = math.nan
    final_cost: float = math.nan
    width_multiple: int = 1

    _engine: DecayEngine | None = field(default=None, init=False, repr=False)
    _late_warned: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.cost is None:
            self.cost = MacsCost(self.structures)
        if math.isnan(self.base_cost) or math.isnan(self.final_cost):
            if self.cost.kind != "macs":
                raise ValueError(f"a {self.cost.kind} cost needs base_cost and final_cost")
            self.base_cost = self.base_macs if math.isnan(self.base_cost) else self.base_cost
            self.final_cost = self.final_macs if math.isnan(self.final_cost) else self.final_cost

    def attach(self, engine: DecayEngine) -> None:
        """Give the context the engine its verbs act on (the Pruner does, once)."""
        self._engine = engine

    def _the_engine(self) -> DecayEngine:
        if self._engine is None:
            raise RuntimeError("this PruneContext has no decay engine attached (PruneContext.attach)")
        return self._engine

    @property
    def scoring(self) -> ScoringView:
        """What a criterion sees: the units, the model, the calibration data and the loss."""
        return self.with_batches(self.calibration_data)

    @property
    def decay_settings(self) -> DecaySettings:
        """The zeroing policy in force (``policy``, ``steps`` = the N of this run ...)."""
        return self._the_engine().settings

    # ------------------------------------------------------------------ verbs
    def committed(self) -> torch.Tensor:
        """Structures that are pruned or on their way to zero (bool ``[S]``)."""
        return self._the_engine().committed()

    def available(self, step: int | None = None) -> torch.Tensor:
        """Structures a method may select at ``step`` (default: now): not committed, not cooling down."""
        return self._the_engine().available(self.step if step is None else step)

    def start(self, ids: torch.Tensor, who: str = "the method") -> bool:
        """Begin removing ``ids`` now, under the run's policy; False (not started) past the last start.

        A decay that starts after :attr:`SelectionSchedule.last_start` could not end a recovery
        margin before the run ends: it is not started, and a warning names ``who`` selected it (once).
        """
        ids = torch.as_tensor(ids, dtype=torch.long)
        if not len(ids):
            return False
        if not self.schedule.can_start(self.step):
            if not self._late_warned:
                warnings.warn(
                    f"{who} selected {len(ids)} structures at step {self.step}, after the last step a decay may "
                    f"start ({self.schedule.last_start}: N = {self.schedule.decay_steps} and recovery_fraction "
                    f"{self.recovery_fraction} of {self.total_steps}); not started",
                    stacklevel=3,
                )
                self._late_warned = True
            return False
        self._the_engine().start(ids, self.step)
        return True

    # ------------------------------------------------------------------ budget
    def macs_budget(self, step: int | None = None) -> float:
        """Absolute MACs the model may keep at ``step`` (default: now)."""
        return self.schedule.macs_budget(self.step if step is None else step, self.base_macs, self.final_macs)

    def committed_macs(self) -> float:
        """MACs once every committed structure (pruned or decaying) is gone."""
        return self.structures.macs(self.committed())

    def budget(self, step: int | None = None) -> float:
        """The cost (unit of ``ctx.cost``: MACs or ms) the model may keep at ``step`` (default: now)."""
        return self.schedule.macs_budget(self.step if step is None else step, self.base_cost, self.final_cost)

    def cost_of(self, pruned: torch.Tensor) -> float:
        """The budget's cost of the model with the bool mask ``pruned`` of structures removed."""
        return self.cost(pruned)

    def committed_cost(self) -> float:
        """The budget's cost once every committed structure (pruned or decaying) is gone."""
        return self.cost_of(self.committed())

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
