"""The Pruner: one object that owns structures, the base method and the zeroing policy.

A user's own training loop needs three calls::

    pruner = Pruner(model, example_inputs, PruneSettings(method="depgraph", target_macs=0.5),
                    optimizer=opt, total_steps=epochs * len(loader))
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward()
        pruner.after_backward()      # keep-at-zero grads, regulariser, self-rectifying inputs
        opt.step()
        pruner.after_step()          # keep-at-zero, decay step, releases, new selections
    pruner.compact()                 # physical removal (optimizer state remapped)

The built-in :class:`~decayprune.train.Trainer` calls them for you when the pruner is
passed as a hook.
"""

from __future__ import annotations

import difflib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .decay import DecayEngine, DecaySettings
from .methods import PruningMethod, create_method, list_methods
from .structure import CompactionReport, StructureSet, compact
from .train.hooks import TrainHook


class PruneSettings(BaseModel):
    """What to prune, to which budget, on which schedule, and how structures reach zero.

    Example:
        >>> PruneSettings(method="depgraph", speed_up=2.0).remaining_macs_fraction()
        0.5
    """

    model_config = ConfigDict(extra="forbid")

    method: str = Field("depgraph", description="base pruning method (see `decayprune.methods.list_methods()`)")
    method_options: dict[str, Any] = Field(default_factory=dict, description="keyword options of the method")
    target_macs: float | None = Field(None, gt=0, lt=1, description="fraction of the base MACs to keep, e.g. 0.5")
    speed_up: float | None = Field(None, gt=1, description="base MACs / pruned MACs, e.g. 2.0 (alternative to target_macs)")
    decay: DecaySettings = Field(default_factory=DecaySettings, description="zeroing policy and DPM settings")
    iterative_steps: int = Field(5, ge=1, description="selection points over the pruning phase; the budget tightens linearly")
    start_epoch: float = Field(0.0, ge=0, description="epoch (of the pruning run) of the first selection")
    end_epoch: float | None = Field(None, ge=0, description="epoch of the last selection (default: leaves room for the decay and fine-tuning)")
    ignored_layers: list[str] = Field(default_factory=list, description="module names whose output channels are never pruned")
    round_to: int | None = Field(None, ge=1, description="pruned channels per layer are a multiple of this")

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in list_methods():
            hint = difflib.get_close_matches(value, list_methods(), n=1)
            extra = f"; did you mean '{hint[0]}'?" if hint else ""
            raise ValueError(f"unknown method; allowed: {', '.join(list_methods())}{extra}")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> "PruneSettings":
        if (self.target_macs is None) == (self.speed_up is None):
            raise ValueError("give exactly one of target_macs (fraction kept, 0..1) or speed_up (> 1)")
        return self

    def remaining_macs_fraction(self) -> float:
        """The fraction of the base MACs the pruned model may keep."""
        return self.target_macs if self.target_macs is not None else 1.0 / float(self.speed_up)


class Pruner(TrainHook):
    """Drive a base method and DPM's zeroing policy from a training loop.

    Args:
        model: The model to prune (modified in place).
        example_inputs: Inputs for tracing and MACs (batch 1).
        settings: A :class:`PruneSettings`.
        optimizer: The training optimizer (its state of pruned structures is held at zero
            and remapped at compaction). Can be set later with :meth:`bind`.
        total_steps: Optimizer steps of the whole pruning run (for the default schedule).
        steps_per_epoch: Optimizer steps per epoch (to read epochs in ``settings``).
        run_dir: Where ``dpm_events.jsonl`` is written (None: kept in memory only).
        method: A ready method instance (overrides ``settings.method``).
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: torch.Tensor | Sequence[torch.Tensor],
        settings: PruneSettings,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        total_steps: int,
        steps_per_epoch: int | None = None,
        run_dir: str | os.PathLike | None = None,
        method: PruningMethod | None = None,
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.model = model
        self.settings = settings
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch or total_steps
        modules = dict(model.named_modules())
        unknown = [n for n in settings.ignored_layers if n not in modules]
        if unknown:
            raise ValueError(f"ignored_layers names modules the model does not have: {unknown}")
        self.structures = StructureSet(
            model, example_inputs,
            ignored_layers=[modules[n] for n in settings.ignored_layers],
            round_to=settings.round_to,
        )
        self.events: list[dict] = []
        self._events_path = Path(run_dir) / "dpm_events.jsonl" if run_dir is not None else None
        self.engine = DecayEngine(self.structures, settings.decay, sink=self._record)
        self.method = method or create_method(settings.method, **settings.method_options)
        self.base_macs = self.structures.macs()
        self.base_params = self.structures.params()
        self.final_target = self.base_macs * settings.remaining_macs_fraction()
        self.selection_steps = self._selection_steps()
        self.step = 0
        self.bind(optimizer)
        self.method.attach(self)

    # ------------------------------------------------------------------ schedule
    def _selection_steps(self) -> list[int]:
        s = self.settings
        start = max(1, int(round(s.start_epoch * self.steps_per_epoch)))  # steps are counted from 1
        if s.end_epoch is not None:
            end = int(round(s.end_epoch * self.steps_per_epoch))
        else:
            decay = s.decay.steps if s.decay.smooth else 0
            # Leave the decay plus a quarter of the run for recovery after the last selection.
            end = max(start, self.total_steps - decay - self.total_steps // 4)
        if end < start:
            raise ValueError(f"pruning ends (step {end}) before it starts (step {start})")
        k = s.iterative_steps
        if k == 1:
            return [start]
        return sorted({start + round(i * (end - start) / (k - 1)) for i in range(k)})

    def is_selection_step(self, step: int) -> bool:
        """True when ``step`` is one of the scheduled selection points."""
        return step in self.selection_steps

    def in_pruning_phase(self, step: int) -> bool:
        """True up to the last selection point (regularisers use it)."""
        return step <= self.selection_steps[-1]

    def target_macs_at(self, step: int) -> float:
        """The MACs budget in force at ``step``: linear from base to final over the selections."""
        done = sum(1 for s in self.selection_steps if s <= step)
        frac = done / len(self.selection_steps)
        return self.base_macs - (self.base_macs - self.final_target) * frac

    # ------------------------------------------------------------------ hooks
    def bind(self, optimizer: torch.optim.Optimizer | None) -> None:
        """Attach the optimizer whose state is held at zero and remapped at compaction."""
        self.optimizer = optimizer
        self.engine.optimizer = optimizer

    def after_backward(self, trainer: Any = None) -> None:
        """Call after ``loss.backward()`` and before ``optimizer.step()``."""
        self.method.regularize(self, self.step)
        self.engine.after_backward()

    def after_step(self, trainer: Any = None) -> None:
        """Call after ``optimizer.step()``."""
        self.step += 1
        released = self.engine.after_step(self.step, skipped=getattr(trainer, "last_step_skipped_flag", False))
        if released:
            self.method.on_release(self, released, self.step)
        ids = self.method.select(self, self.step)
        if ids is not None and len(ids):
            self.engine.start(torch.as_tensor(ids, dtype=torch.long), self.step)

    def finish(self) -> None:
        """Complete every decay still running (zero it now)."""
        self.engine.finish(self.step)

    def _warn_if_target_missed(self) -> None:
        reached = self.structures.macs() / self.base_macs
        wanted = self.settings.remaining_macs_fraction()
        if reached > wanted + 0.01:
            warnings.warn(
                f"pruning ended at {reached:.1%} of the base MACs, above the target {wanted:.1%}: the schedule "
                "ended before the budget was filled (check end_epoch / iterative_steps) or every candidate was "
                "capped by max_layer_ratio",
                stacklevel=3,
            )

    def compact(self) -> CompactionReport:
        """Finish pending decays and physically remove every pruned structure.

        Warns when the pruned model keeps more than the target MACs (+1% tolerance).
        """
        self.finish()
        self._warn_if_target_missed()
        self.structures.zero_pruned_(self.optimizer)
        return compact(self.structures, self.optimizer)

    # TrainHook interface ------------------------------------------------
    def on_train_start(self, trainer: Any) -> None:
        self.bind(trainer.optimizer)

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, Any]) -> None:
        metrics.update(self.summary())

    def on_train_end(self, trainer: Any) -> None:
        self.finish()

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict[str, Any]:
        """Counts of the pruning state (for logs and ``result.json``)."""
        committed = self.engine.committed()
        return {
            "pruned_structures": int(self.structures.pruned.sum()),
            "decaying_structures": int(self.engine.decaying.sum()),
            "releases": self.engine.releases,
            "macs_committed_fraction": self.structures.macs(committed) / self.base_macs,
        }

    def _record(self, event: dict) -> None:
        self.events.append(event)
        if self._events_path is not None:
            self._events_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._events_path, "a") as fh:
                fh.write(json.dumps(event) + "\n")

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "engine": self.engine.state_dict(), "method": self.method.state_dict(),
                "events_logged": len(self.events)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.engine.load_state_dict(state["engine"])
        self.method.load_state_dict(state["method"])
        self._truncate_events(int(state.get("events_logged", 0)))

    def _truncate_events(self, count: int) -> None:
        if self._events_path is None or not self._events_path.exists():
            return
        lines = self._events_path.read_text().splitlines()[:count]
        self.events = [json.loads(line) for line in lines]
        tmp = self._events_path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        os.replace(tmp, self._events_path)
