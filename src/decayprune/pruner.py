"""The Pruner: one object that owns structures, the base method and the zeroing policy.

A user's own training loop needs three calls::

    pruner = Pruner(model, example_inputs, PruneSettings(method="depgraph", target_macs_fraction=0.5),
                    optimizer=opt, total_steps=epochs * len(loader))
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward()
        pruner.after_backward()      # keep-at-zero grads, self-rectifying inputs, method regulariser
        opt.step()
        pruner.after_step()          # keep-at-zero, decay step, releases, new selections
    pruner.compact()                 # physical removal (optimizer state remapped)

Methods that own the optimizer (OTOv2's DHSPG) supply it through
``pruner.build_optimizer(TrainSettings(...))``, which returns a plain optimizer for the others.
The built-in :class:`~decayprune.train.Trainer` calls all of this when the pruner is a hook.

A method that prunes single weights (``unit_kind = "elements"``, e.g. ``magnitude_elements``; target
``settings.target_sparsity``) runs on :class:`~decayprune.sparse.ElementMasks` instead of channel
groups (``pruner.masks``); it ends with ``pruner.finish_masks()`` and
:func:`~decayprune.sparse.save_masked` instead of ``compact()``.

With float16 AMP, bind the loop's ``torch.amp.GradScaler`` (``Pruner(..., scaler=scaler)`` or
``pruner.bind(opt, scaler)``) and call ``scaler.unscale_(opt)`` before ``after_backward()``: a step the
scaler skips (inf/NaN gradients) then advances no decay and no self-rectifying window. A loop that
knows better passes ``after_step(skipped=...)`` itself.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import PruneSettings, TrainSettings
from .criteria import create_criterion
from .decay import DecayEngine
from .decay.stats import SR_STATS_FILE
from .files import append_jsonl, write_text_atomic
from .methods import PruneContext, PruningMethod, SelectionSchedule, create_method, method_class
from .sparse import ElementMasks
from .structure import CompactionReport, StructureSet, compact
from .structure.budget_cost import budget_cost, check_latency_target, resolve_width_multiple
from .structure.latency_cost import LATENCY_TABLE_FILE, LatencyCost
from .train.amp import scale_of, step_skipped
from .train.distributed import assert_same_on_all_ranks, get_world_size
from .train.hooks import TrainHook
from .train.optim import build_optimizer

__all__ = ["PruneSettings", "Pruner", "build_structures"]


def build_structures(
    model: nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
    settings: PruneSettings,
) -> StructureSet:
    """The channel groups of ``model`` as ``settings`` asks (ignored layers and types, head units, verify).

    Example:
        >>> from decayprune import create_model
        >>> s = build_structures(create_model("small_cnn", num_classes=10, in_channels=1), torch.zeros(1, 1, 8, 8),
        ...                      PruneSettings(target_macs_fraction=0.5))
        >>> s.num_structures > 0
        True
    """
    modules = dict(model.named_modules())
    return StructureSet(
        model,
        example_inputs,
        ignored_layers=[modules[n] for n in settings.ignored_layers if n in modules],
        ignored_types=settings.ignored_types,
        verify=settings.verify,
        tolerance=settings.verify_tolerance,
        head_units=settings.head_units,
    )


class Pruner(TrainHook):
    """Drive a base method and DPM's zeroing policy from a training loop.

    Args:
        model: The model to prune (modified in place).
        example_inputs: Inputs for tracing and MACs (batch 1): a tensor, a tuple of positional inputs or a
            dict of keyword inputs (the model is then called as ``model(**example_inputs)``).
        settings: A :class:`~decayprune.config.PruneSettings`.
        optimizer: The training optimizer (its state of pruned structures is held at zero
            and remapped at compaction). Can be set later with :meth:`bind`.
        scaler: The loop's ``torch.amp.GradScaler`` (float16 AMP): :meth:`after_step` reads from it
            whether the optimizer step was skipped. Can be set later with :meth:`bind`.
        total_steps: Optimizer steps of the whole pruning run (for the default schedule).
        steps_per_epoch: Optimizer steps per epoch (to read epochs in ``settings``).
        run_dir: Where ``dpm_events.jsonl`` is written (None: kept in memory only).
        method: A ready method instance (overrides ``settings.method`` and its criterion).
        calibration_data: Batches ``(inputs, labels)`` for criteria that need data (e.g. the
            training loader); each pass takes a fresh iterator.
        loss_fn: ``loss_fn(outputs, labels)`` for data passes (default: cross-entropy).
        structures: A :class:`StructureSet` already built on ``model`` (e.g. with settings of its
            own); None builds one from ``settings`` (ignored layers/types, verify).
        schedule: The run's :class:`SelectionSchedule`, when the caller already built it from the same
            settings and steps (e.g. :func:`decayprune.jobs.check_schedule`); None builds it here.

    With ``settings.target_latency_fraction`` the budget is a latency on ``settings.latency``'s
    device: a per-layer table is measured when the Pruner is built (cached as
    ``latency_table.json`` in ``run_dir``, reused while it matches), and :meth:`compact` times the
    pruned model against it (:attr:`budget_result`).

    Example:
        >>> from decayprune import create_model
        >>> model = create_model("small_cnn", num_classes=10, in_channels=1)
        >>> p = Pruner(model, torch.zeros(1, 1, 8, 8), PruneSettings(target_macs_fraction=0.5), total_steps=1000)
        >>> p.schedule.steps, type(p.method).__name__, type(p.method.criterion).__name__
        ((1,), 'DepGraph', 'GroupMagnitude')
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
        settings: PruneSettings,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        scaler: torch.amp.GradScaler | None = None,
        total_steps: int,
        steps_per_epoch: int | None = None,
        run_dir: str | os.PathLike | None = None,
        method: PruningMethod | None = None,
        calibration_data: Iterable[Any] | None = None,
        loss_fn: Any = F.cross_entropy,
        structures: StructureSet | None = None,
        schedule: SelectionSchedule | None = None,
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
        if structures is not None and structures.model is not model:
            raise ValueError("structures were built on another model; pass the StructureSet of this model")
        self.masks: ElementMasks | None = None
        """The element masks when the method prunes single weights (then :attr:`structures` is the same object)."""
        unit_kind = method.unit_kind if method is not None else method_class(settings.method).unit_kind
        if structures is None and unit_kind == "elements":
            self.masks = ElementMasks(model, example_inputs, ignored_layers=settings.ignored_layers)
            structures = cast(StructureSet, self.masks)  # the PrunableUnits the engine and context use
        self.structures = structures if structures is not None else build_structures(model, example_inputs, settings)
        self.events: list[dict] = []
        self.sr_stats: list[dict] = []
        """Per-step percentiles of C_rate and C_len over the decaying structures (``sp+sr``), also in
        ``sr_stats.jsonl`` next to ``dpm_events.jsonl``; see :func:`decayprune.decay.plot_sr_stats`."""
        self._sr_stats_mark = 0
        self.forced_at_finish: int | None = None
        """Decays the last :meth:`finish` had to complete (None: not called yet)."""
        self._events_path = Path(run_dir) / "dpm_events.jsonl" if run_dir is not None else None
        self._stats_path = Path(run_dir) / SR_STATS_FILE if run_dir is not None else None
        self.schedule = schedule or SelectionSchedule.from_settings(settings, total_steps, self.steps_per_epoch)
        settings = self.settings = self.schedule.fit(settings)  # decay.steps = the N in force
        stats_sink = self._record_stats if settings.decay.self_rectifying else None
        self.engine = DecayEngine(self.structures, settings.decay, sink=self._record, stats_sink=stats_sink)
        self.engine.release_until = self.schedule.last_start
        self.method = method or self._create_method(settings)
        self.base_macs = self.structures.macs()
        self.base_params = self.structures.params()
        self.width_multiple = resolve_width_multiple(settings)
        cache = Path(run_dir) / LATENCY_TABLE_FILE if run_dir is not None else None
        cost = budget_cost(self.structures, settings, self.width_multiple, cache)
        base_cost = cost(torch.zeros(self.structures.num_structures, dtype=torch.bool))
        self.context = PruneContext(
            model=model,
            structures=self.structures,
            schedule=self.schedule,
            base_macs=self.base_macs,
            final_macs=self.base_macs * settings.remaining_macs_fraction()
            if settings.budget_kind == "macs"
            else self.base_macs,
            loss_fn=loss_fn,
            calibration_data=calibration_data,
            total_steps=total_steps,
            recovery_fraction=settings.recovery_share(),
            cost=cost,
            base_cost=base_cost,
            final_cost=base_cost * settings.remaining_fraction(),
            width_multiple=self.width_multiple,
            target_sparsity=settings.target_sparsity,
        )
        self.context.attach(self.engine)
        self.budget_result: dict[str, Any] = {}
        """After :meth:`compact` with a latency budget: the target, the table's prediction and the
        measured latency of the pruned model (``within_tolerance``: measured <= target + tolerance)."""
        criterion = self.method.criterion
        if criterion is not None and criterion.needs_data and calibration_data is None:
            raise ValueError(
                f"criterion {criterion.name!r} needs {', '.join(sorted(criterion.needs))}: pass calibration_data "
                "(e.g. the training loader) to the Pruner"
            )
        self.scaler: torch.amp.GradScaler | None = None
        self._scale_before: torch.Tensor | None = None
        self.bind(optimizer, scaler)
        self.method.setup(self.context)

    @staticmethod
    def _create_method(settings: PruneSettings) -> PruningMethod:
        name = settings.criterion_name()
        criterion = create_criterion(name, **settings.criterion_options) if name is not None else None
        return create_method(settings.method, criterion, **settings.method_options)

    # ------------------------------------------------------------------ schedule
    @property
    def step(self) -> int:
        """Optimizer steps taken so far."""
        return self.context.step

    @property
    def final_macs(self) -> float:
        """MACs the pruned model may keep (the base MACs under a latency budget, which sets no MACs target)."""
        return self.context.final_macs

    def macs_budget(self, step: int | None = None) -> float:
        """The MACs budget in force at ``step`` (default: now)."""
        return self.context.macs_budget(step)

    # ------------------------------------------------------------------ hooks
    def bind(self, optimizer: torch.optim.Optimizer | None, scaler: torch.amp.GradScaler | None = None) -> None:
        """Attach the optimizer whose state is held at zero and remapped at compaction.

        ``scaler``: the GradScaler that steps it (kept when None), read by :meth:`after_step`.
        """
        if scaler is not None:
            self.scaler = scaler
        self.optimizer = optimizer
        self.engine.optimizer = optimizer
        self.context.optimizer = optimizer

    def build_optimizer(self, settings: TrainSettings, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """The training optimizer: the method's own (e.g. DHSPG) or a plain one from ``settings``; bound."""
        optimizer = self.method.build_optimizer(self.context, settings) or build_optimizer(
            model or self.model, settings
        )
        self.bind(optimizer)
        return optimizer

    def after_backward(self, trainer: Any = None) -> None:
        """Call after ``loss.backward()`` and before ``optimizer.step()``.

        The method may read the dense loss gradient first (``observe_gradients``: RigL); the decay
        engine then reads it (keep-at-zero, self-rectifying inputs); then the method adds its
        regulariser. With a bound GradScaler, call ``scaler.unscale_(opt)`` first; its scale is
        noted here (on the device) for :meth:`after_step`.
        """
        self._scale_before = scale_of(self.scaler)
        self.method.observe_gradients(self.context)
        self.engine.after_backward()
        self.method.after_backward(self.context)

    def after_step(self, trainer: Any = None, *, skipped: bool | torch.Tensor | None = None) -> None:
        """Call after ``optimizer.step()`` (with AMP: after ``scaler.update()``).

        Args:
            trainer: Unused (the :class:`~decayprune.train.TrainHook` signature).
            skipped: Whether the optimizer step was skipped (a bool, or a device bool tensor: no
                sync); a skipped step advances no decay and no self-rectifying window (the step
                count still advances). None: from the bound GradScaler, whose scale shrinks
                exactly when it skipped the step (False without one).
        """
        ctx = self.context
        ctx.step += 1
        if skipped is None:
            skipped = step_skipped(self.scaler, self._scale_before)
        self._scale_before = None
        released = self.engine.after_step(ctx.step, skipped=skipped)
        if released:
            self.method.on_release(ctx, released)
        self.method.after_step(ctx)
        ids = self.method.select(ctx)
        if ids is not None:
            ctx.start(ids, who=type(self.method).__name__)  # not started past the recovery margin (warned once)
        if get_world_size() > 1 and ctx.step % self.engine.sync_every == 0:
            self.check_ranks_agree()

    def check_ranks_agree(self) -> None:
        """Under ``torch.distributed``: raise ``RuntimeError`` unless every rank holds the same pruned and
        decaying structures and release count (every rank calls it; a no-op in one process).

        Every decision is computed from statistics that are equal on all ranks (DDP-averaged
        gradients, all-reduced criterion scores, identical weights), so the ranks agree by
        construction; :meth:`after_step` checks it every ``sync_every`` steps and loudly stops a run
        whose ranks drifted apart instead of compacting different models.
        """
        decaying = self.engine.decaying  # reads back pending completions into ``pruned`` first
        state = torch.cat(
            [
                self.structures.pruned.double() + 2 * decaying.double(),  # per structure: 0, 1, 2
                torch.tensor([float(self.engine.releases)], dtype=torch.float64),
            ]
        )
        assert_same_on_all_ranks(state, f"the pruning state at step {self.step} (pruned, decaying, releases)")

    def finish(self) -> int:
        """Complete every decay still running (zero it now); returns how many were (also kept in
        :attr:`forced_at_finish`: 0 means the model is the one training ended with)."""
        self.forced_at_finish = self.engine.finish(self.step)
        return self.forced_at_finish

    def _warn_if_target_missed(self) -> None:
        ctx = self.context
        reached = ctx.cost_of(self.structures.pruned) / ctx.base_cost
        wanted = self.settings.remaining_fraction()
        if reached > wanted + 0.01:
            what = "MACs" if ctx.cost.kind == "macs" else "predicted latency"
            warnings.warn(
                f"pruning ended at {reached:.1%} of the base {what}, above the target {wanted:.1%}: the schedule "
                "ended before the budget was filled (check end_epoch / iterative_steps) or every candidate was "
                "capped by max_layer_ratio",
                stacklevel=3,
            )

    def finish_masks(self) -> ElementMasks:
        """Element methods: finish pending decays and hold the pruned weights (and optimizer state) at zero.

        The model keeps its shapes; save it with :func:`decayprune.sparse.save_masked`. Warns when the
        masks end below the target sparsity (-1% tolerance).
        """
        if self.masks is None:
            raise RuntimeError("finish_masks() is for methods that prune single weights; use compact()")
        self.finish()
        self.masks.zero_pruned_(self.optimizer)
        wanted, reached = self.settings.target_sparsity or 0.0, self.masks.sparsity()
        if reached < wanted - 0.01:
            warnings.warn(
                f"pruning ended at sparsity {reached:.1%}, below the target {wanted:.1%}: the schedule ended before "
                "the target was reached",
                stacklevel=2,
            )
        return self.masks

    def compact(self) -> CompactionReport:
        """Finish pending decays, fold added multipliers and physically remove every pruned structure.

        Warns when the pruned model keeps more than the target MACs (+1% tolerance). Element methods
        are not compacted (see :meth:`finish_masks`).
        """
        if self.masks is not None:
            raise RuntimeError("single weights are masked, not removed: call finish_masks() and save_masked()")
        self.finish()
        if get_world_size() > 1:  # every rank compacts its own copy: they must remove the same structures
            self.check_ranks_agree()
        self._warn_if_target_missed()
        self.context.fold_channel_multipliers()
        self.method.before_compact(self.context)
        self.structures.zero_pruned_(self.optimizer)
        before = dict(self.model.named_parameters())
        predicted = self.context.cost_of(self.structures.pruned)
        report = compact(self.structures, self.optimizer)
        after = dict(self.model.named_parameters())
        param_map = {before[n]: p for n, p in after.items() if n in before and before[n] is not p}
        self.method.on_compact(self.context, param_map)
        if isinstance(self.context.cost, LatencyCost):
            self.budget_result = check_latency_target(self.context.cost, self.model, self.settings, predicted)
        return report

    # TrainHook interface ------------------------------------------------
    def provide_optimizer(self, model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer | None:
        """The Trainer asks for its optimizer here: the method's own, or None for the default."""
        optimizer = self.method.build_optimizer(self.context, settings)
        if optimizer is not None:
            self.bind(optimizer)
        return optimizer

    def on_train_start(self, trainer: Any) -> None:
        scaler = getattr(trainer, "scaler", None)
        self.bind(trainer.optimizer, scaler if scaler is not None and scaler.is_enabled() else None)

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, Any]) -> None:
        metrics.update(self.summary())

    def on_train_end(self, trainer: Any) -> None:
        self.finish()

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict[str, Any]:
        """Counts of the pruning state (for logs and ``result.json``)."""
        committed = self.engine.committed()
        out: dict[str, Any] = {
            "pruned_structures": int(self.structures.pruned.sum()),
            "decaying_structures": int(self.engine.decaying.sum()),
            "releases": self.engine.releases,
            "macs_committed_fraction": self.structures.macs(committed) / self.base_macs,
        }
        if self.context.cost.kind != "macs":
            out[f"{self.context.cost.kind}_committed_fraction"] = (
                self.context.cost_of(committed) / self.context.base_cost
            )
        if self.masks is not None:
            out["sparsity_committed"] = self.masks.sparsity(committed)
        recent, self._sr_stats_mark = self.sr_stats[self._sr_stats_mark :], len(self.sr_stats)
        if recent:
            # Since the last summary: the median of the per-step medians and the largest per-step p95.
            for name in ("c_rate", "c_len"):
                out[f"sr_{name}_p50"] = float(torch.tensor([r[f"{name}_p50"] for r in recent]).median())
                out[f"sr_{name}_p95"] = max(r[f"{name}_p95"] for r in recent)
        return out

    def _record_stats(self, record: dict) -> None:
        self.sr_stats.append(record)
        if self._stats_path is not None:
            append_jsonl(self._stats_path, record)

    def _record(self, event: dict) -> None:
        self.events.append(event)
        if self._events_path is not None:
            append_jsonl(self._events_path, event)

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "engine": self.engine.state_dict(),
            "method": self.method.state_dict(),
            "events_logged": len(self.events),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.context.step = int(state["step"])
        self.engine.load_state_dict(state["engine"])
        self.method.load_state_dict(state["method"])
        self._truncate_events(int(state.get("events_logged", 0)))

    def _truncate_events(self, count: int) -> None:
        if self._events_path is None or not self._events_path.exists():
            return
        lines = self._events_path.read_text().splitlines()[:count]
        self.events = [json.loads(line) for line in lines]
        write_text_atomic(self._events_path, "".join(line + "\n" for line in lines))
