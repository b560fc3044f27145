"""The training loop: :class:`Trainer` and its :class:`TrainResult`."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from rich.console import Console
from torch import nn

from decayprune.config.train import TrainSettings, resolve_device
from decayprune.train.amp import amp_problem, autocast, make_scaler, scale_of, step_skipped
from decayprune.train.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from decayprune.train.distributed import (
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    get_world_size,
    is_main_process,
    unwrap_model,
)
from decayprune.train.evaluate import evaluate
from decayprune.train.hooks import TrainHook
from decayprune.train.losses import CrossEntropyLoss, Loss, output_tensor
from decayprune.train.metrics_log import read_jsonl, write_jsonl
from decayprune.train.optim import build_optimizer
from decayprune.train.progress import TrainProgress
from decayprune.train.schedule import build_scheduler
from decayprune.train.seed import set_seed

__all__ = ["TrainResult", "Trainer"]

CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.jsonl"
# Settings that may change between an interrupted run and its resume without changing the result.
_RESUME_FREE_SETTINGS = frozenset({"device", "eval_every", "checkpoint_every", "log_every"})


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        final: Final test metrics (``top1``, ``top5`` in percent, ``loss``, ``samples``).
        history: One metrics dict per epoch, as in ``metrics.jsonl`` (earlier epochs
            included after a resume).
        epochs_run: Epochs trained by this call.
        wall_time_s: Seconds spent in this call.
    """

    final: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs_run: int = 0
    wall_time_s: float = 0.0


def _steps_per_epoch(loader: Iterable[Any]) -> int:
    try:
        steps = len(loader)  # type: ignore[arg-type]
    except TypeError as err:
        raise TypeError("train_loader must define __len__ (the lr schedule is per step)") from err
    if steps < 1:
        raise ValueError("train_loader is empty (len(train_loader) == 0)")
    return steps


def _is_wrapped(model: nn.Module) -> bool:
    return isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel))


class Trainer:
    """Supervised classification training with hooks, checkpoints and exact resume.

    Per step: forward (under autocast when ``settings.amp`` is ``"bf16"`` or ``"fp16"``, on the CPU
    or CUDA), the loss (``loss``, a :class:`~decayprune.train.losses.Loss`; default cross-entropy
    with label smoothing), ``zero_grad(set_to_none=True)``, backward (scaled by a GradScaler for
    ``"fp16"``), unscale, ``hook.after_backward``, ``optimizer.step()``, ``scheduler.step()`` (per
    step), ``hook.after_step``. After each epoch: evaluation (every ``eval_every`` epochs and
    at the end), ``hook.on_epoch_end``, a line in ``run_dir/metrics.jsonl`` and a
    checkpoint in ``run_dir/checkpoint/`` (every ``checkpoint_every`` epochs and at the end).

    The data order must depend only on (seed, epoch): the loader's ``set_epoch(epoch)``
    is called at every epoch start when it has one. Under ``torch.distributed`` pass an
    already DDP-wrapped model (it is not moved); only rank 0 writes files and shows progress,
    and every rank's loader must yield the same number of batches.

    ``settings.batch_size`` is for whoever builds the loaders; the trainer uses the batches
    it gets. A given ``optimizer`` (e.g. a pruning method's own) replaces the one built from
    the settings; the schedule then scales each of its groups' initial lr. With
    ``test_loader=None`` nothing is evaluated and ``TrainResult.final`` is empty. Train and
    test top-1 count what ``loss.scored`` returns (tokens for ``causal_lm``).

    Attributes hooks may use: ``model``, ``optimizer``, ``scheduler``, ``scaler``,
    ``settings``, ``epoch`` (0-based index of the running epoch; after ``fit`` the number
    of epochs done), ``global_step`` (optimizer steps done), ``device``, ``run_dir``,
    ``last_loss``, ``last_step_skipped`` (AMP skipped the step; reading it syncs with the
    device), ``last_step_skipped_flag`` (the same as a device bool tensor, or False without AMP,
    for hooks that must not sync) and ``stop_training``
    (set it to True to stop after the current epoch; under DDP set it on every rank).

    Example:
        >>> from decayprune.train import TrainSettings
        >>> data = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))] * 2
        >>> trainer = Trainer(nn.Linear(4, 3), data, data, TrainSettings(epochs=1, device="cpu"), progress=False)
        >>> result = trainer.fit()
        >>> result.epochs_run, trainer.global_step
        (1, 2)
    """

    def __init__(
        self,
        model: nn.Module,
        train_loader: Iterable[Any],
        test_loader: Iterable[Any] | None,
        settings: TrainSettings,
        *,
        run_dir: str | os.PathLike[str] | None = None,
        hooks: Sequence[TrainHook] = (),
        optimizer: torch.optim.Optimizer | None = None,
        loss: Loss | None = None,
        progress: bool = True,
        console: Console | None = None,
    ) -> None:
        if not isinstance(settings, TrainSettings):
            raise TypeError(f"settings must be a TrainSettings, got {type(settings).__name__}")
        for hook in hooks:
            if not isinstance(hook, TrainHook):
                raise TypeError(f"hooks must be TrainHook instances, got {type(hook).__name__}")
        self.settings = settings
        self.train_loader = train_loader
        self.test_loader = test_loader
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.hooks: list[TrainHook] = list(hooks)
        self.progress = progress
        self.console = console
        if _is_wrapped(model):
            self.device = next(model.parameters()).device
        else:
            self.device = resolve_device(settings.device)
            model.to(self.device)
        problem = amp_problem(settings.amp, self.device)
        if problem:
            raise ValueError(problem)
        self.amp = settings.amp
        self.use_amp = settings.amp != "off"
        self.channels_last = settings.channels_last and self.device.type == "cuda"
        if self.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model
        self.optimizer = optimizer or self._optimizer_from_hooks(model, settings) or build_optimizer(model, settings)
        self.steps_per_epoch = _steps_per_epoch(train_loader)
        self.scheduler = build_scheduler(self.optimizer, settings, self.steps_per_epoch)
        self.scaler = make_scaler(settings.amp, self.device)
        self.loss_fn: Loss = loss or CrossEntropyLoss(settings.label_smoothing)
        self.epoch = 0
        self.global_step = 0
        self.stop_training = False
        self.last_step_skipped_flag: bool | torch.Tensor = False
        self.history: list[dict[str, Any]] = []
        self._last_loss: torch.Tensor | None = None
        self._last_test: tuple[int, dict[str, Any]] | None = None

    def _optimizer_from_hooks(self, model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer | None:
        for hook in self.hooks:
            optimizer = hook.provide_optimizer(model, settings)
            if optimizer is not None:
                return optimizer
        return None

    @property
    def last_loss(self) -> float | None:
        """Training loss of the latest step (None before the first step)."""
        return None if self._last_loss is None else float(self._last_loss)

    @property
    def last_loss_tensor(self) -> torch.Tensor | None:
        """Training loss of the latest step as a detached tensor on its device (no host sync)."""
        return self._last_loss

    @property
    def last_step_skipped(self) -> bool:
        """True when AMP's GradScaler skipped the latest optimizer step (inf/NaN gradients)."""
        return bool(self.last_step_skipped_flag)

    @property
    def checkpoint_dir(self) -> Path | None:
        """``run_dir / "checkpoint"`` (None without a run folder)."""
        return None if self.run_dir is None else self.run_dir / CHECKPOINT_DIR

    def evaluate(self) -> dict[str, Any]:
        """Evaluate the model on the test loader (all-reduced under DDP)."""
        if self.test_loader is None:
            raise ValueError("this trainer has no test_loader to evaluate on")
        # The plain module: DDP's forward may run collectives, which evaluation does not need. Its
        # buffers (batch-norm statistics) are rank 0's, as DDP would copy at the next forward.
        broadcast_buffers(unwrap_model(self.model))
        return evaluate(
            unwrap_model(self.model), self.test_loader, device=self.device, amp=self.amp, loss_fn=self.loss_fn
        )

    def fit(self, *, resume: bool | Literal["auto"] = False) -> TrainResult:
        """Train until ``settings.epochs`` epochs are done.

        Args:
            resume: True: continue from ``run_dir/checkpoint`` (it must exist);
                ``"auto"``: continue when a checkpoint exists, else start fresh;
                False: start fresh (seeding all RNGs with ``settings.seed``).

        Returns:
            The final test metrics and the per-epoch history.
        """
        started = time.perf_counter()
        start_epoch = self._begin(resume)
        view = TrainProgress(
            enabled=self.progress and is_main_process(), total_epochs=self.settings.epochs, console=self.console
        )
        epochs_run = 0
        try:
            for hook in self.hooks:
                hook.on_train_start(self)
            for epoch in range(start_epoch, self.settings.epochs):
                self._run_epoch(epoch, view)
                epochs_run += 1
                if self.stop_training:
                    break
            final = self._final_metrics()
            for hook in self.hooks:
                hook.on_train_end(self)
        finally:
            view.close()
        return TrainResult(final, list(self.history), epochs_run, time.perf_counter() - started)

    # ------------------------------------------------------------------ internals

    def _begin(self, resume: bool | Literal["auto"]) -> int:
        """Restore a checkpoint or reset for a fresh run; returns the first epoch to run."""
        if resume not in (True, False, "auto"):
            raise ValueError(f"resume must be True, False or 'auto', got {resume!r}")
        self.stop_training = False
        self._last_test = None
        if resume:
            if self.checkpoint_dir is None or self.run_dir is None:
                raise ValueError("resume needs a run_dir holding a checkpoint")
            try:
                meta = read_checkpoint_meta(self.checkpoint_dir)
            except FileNotFoundError:
                if resume != "auto":
                    raise
            else:
                self._warn_changed_settings(meta["settings"])
                load_checkpoint(self.checkpoint_dir, self)
                self.history = [r for r in read_jsonl(self.run_dir / METRICS_FILE) if r["epoch"] < self.epoch]
                self._write_metrics()
                return self.epoch
        set_seed(self.settings.seed)
        if self.scheduler.last_epoch != 0:  # a second fit() on this trainer: restart the schedule
            self.scheduler = build_scheduler(self.optimizer, self.settings, self.steps_per_epoch)
        self.epoch = 0
        self.global_step = 0
        self.history = []
        self._write_metrics()
        return 0

    def _warn_changed_settings(self, saved: dict[str, Any]) -> None:
        current = self.settings.model_dump(mode="json")
        if isinstance(saved.get("amp"), bool):  # written before amp took a mode: true meant fp16 (on CUDA)
            saved = {**saved, "amp": "fp16" if saved["amp"] else "off"}
        changed = sorted(
            key
            for key in current.keys() | saved.keys()
            if key not in _RESUME_FREE_SETTINGS and current.get(key) != saved.get(key)
        )
        if changed:
            warnings.warn(
                f"resuming with settings that differ from the checkpoint's: {', '.join(changed)}; "
                "the result will differ from an uninterrupted run",
                stacklevel=3,
            )

    def _run_epoch(self, epoch: int, view: TrainProgress) -> None:
        self.epoch = epoch
        train = self._train_epoch(epoch, view)
        last = epoch + 1 == self.settings.epochs
        test: dict[str, Any] | None = None
        if self.test_loader is not None and ((epoch + 1) % self.settings.eval_every == 0 or last):
            test = self.evaluate()
            self._last_test = (epoch, test)
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "step": self.global_step,
            **train,
            "test_top1": test["top1"] if test else None,
            "test_top5": test["top5"] if test else None,
            "test_loss": test["loss"] if test else None,
        }
        for hook in self.hooks:
            hook.on_epoch_end(self, epoch, metrics)
        self.history.append(metrics)
        self._write_metrics()
        view.end_epoch(self._summary(metrics))
        self.epoch = epoch + 1
        every = self.settings.checkpoint_every
        if (every and (epoch + 1) % every == 0) or last or self.stop_training:
            self._save_checkpoint()

    def _train_epoch(self, epoch: int, view: TrainProgress) -> dict[str, Any]:
        """Train one epoch; returns its train metrics (summed over processes under DDP)."""
        self.model.train()
        set_epoch = getattr(self.train_loader, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        view.start_epoch(epoch, self.steps_per_epoch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.device)
        scored = torch.zeros((), dtype=torch.float64, device=self.device)  # samples (or tokens) top-1 counts over
        seen = 0
        lr = self.optimizer.param_groups[0]["lr"]
        started = time.perf_counter()
        for index, (inputs, labels) in enumerate(self.train_loader):
            inputs, labels = self._to_device(inputs, labels)
            lr = self.optimizer.param_groups[0]["lr"]  # the lr this step uses
            outputs, loss = self._step(inputs, labels)
            loss_sum += loss.double() * labels.shape[0]
            flat = self.loss_fn.scored(outputs, labels)
            if flat is not None:
                correct += (flat[0].argmax(dim=-1) == flat[1]).sum()
                scored += flat[1].numel()
            seen += labels.shape[0]
            if view.enabled and ((index + 1) % self.settings.log_every == 0 or index + 1 == self.steps_per_epoch):
                rate = seen * get_world_size() / max(time.perf_counter() - started, 1e-9)
                top1 = 100.0 * correct.item() / max(scored.item(), 1.0)
                view.update(index + 1, loss=loss_sum.item() / seen, top1=top1, images_per_s=rate)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = max(time.perf_counter() - started, 1e-9)
        seen_t = torch.tensor(float(seen), dtype=torch.float64, device=self.device)
        totals = all_reduce_sum(torch.stack([loss_sum, correct, seen_t, scored])).tolist()
        loss_total, correct_total, count, scored_total = totals
        denominator = max(count, 1.0)
        return {
            "train_loss": loss_total / denominator,
            "train_top1": 100.0 * correct_total / max(scored_total, 1.0),
            "lr": lr,
            "epoch_time_s": elapsed,
            "images_per_s": count / elapsed,
        }

    def _to_device(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = inputs.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs, labels

    def _step(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """One optimizer step on a batch already on the device; returns the model's outputs and the detached loss."""
        with autocast(self.amp, self.device):
            outputs = self.model(inputs)
            loss = self.loss_fn(outputs, labels)
        self.optimizer.zero_grad(set_to_none=True)
        scaled = self.scaler.is_enabled()
        if scaled:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        for hook in self.hooks:
            hook.after_backward(self)
        if scaled:
            # The scale shrinks exactly when the step was skipped; compared on the device (no sync).
            scale = scale_of(self.scaler)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.last_step_skipped_flag = step_skipped(self.scaler, scale)
            with warnings.catch_warnings():  # a skipped first AMP step makes torch warn about the order
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                self.scheduler.step()
        else:
            self.optimizer.step()
            self.scheduler.step()
        self.global_step += 1
        self._last_loss = loss.detach()
        for hook in self.hooks:
            hook.after_step(self)
        return _detached(outputs), self._last_loss

    def _final_metrics(self) -> dict[str, Any]:
        if self.test_loader is None:
            return {}
        if self._last_test is not None and self._last_test[0] == self.epoch - 1:
            return dict(self._last_test[1])
        return self.evaluate()

    def _write_metrics(self) -> None:
        if self.run_dir is not None and is_main_process():
            write_jsonl(self.run_dir / METRICS_FILE, self.history)

    def _save_checkpoint(self) -> None:
        if self.checkpoint_dir is None:
            return
        if is_main_process():
            save_checkpoint(self.checkpoint_dir, self)
        barrier()

    def _summary(self, m: dict[str, Any]) -> str:
        test = f"test {m['test_top1']:.2f}%" if m["test_top1"] is not None else "test -"
        line = (
            f"epoch {m['epoch'] + 1}/{self.settings.epochs}  loss {m['train_loss']:.4f}  "
            f"train {m['train_top1']:.2f}%  {test}  lr {m['lr']:.4g}  "
            f"{m['images_per_s']:,.0f} img/s  {m['epoch_time_s']:.1f}s"
        )
        if "macs_committed_fraction" in m:  # a pruning hook reported its state (decayprune.Pruner)
            line += (
                f"  | MACs {m['macs_committed_fraction']:.1%}  decaying {m['decaying_structures']}  "
                f"pruned {m['pruned_structures']}  releases {m['releases']}"
            )
        return line


def _detached(outputs: Any) -> Any:
    """The outputs with their logits tensor detached (a plain tensor, or the logits of a ModelOutput/tuple)."""
    if isinstance(outputs, torch.Tensor):
        return outputs.detach()
    return output_tensor(outputs).detach()
