"""A Lightning ``Callback`` that runs a :class:`~decayprune.Pruner` inside ``lightning.Trainer``.

Where the Pruner's calls land in Lightning's automatic optimization (lightning 2.x)::

    for each batch: training_step -> backward                 # accumulate_grad_batches micro-batches
    at each optimizer step:
        on_before_optimizer_step -> pruner.after_backward()    # before gradient clipping
        clip_gradients (gradient_clip_val); optimizer.step()
    on_train_batch_end, once trainer.global_step has advanced -> pruner.after_step()
    on_train_end                -> pruner.compact()             # when compact_at_end

Unlike the Hugging Face Trainer, Lightning clips *after* ``on_before_optimizer_step``, so the
clip norm includes a method's regulariser and excludes the gradients keep-at-zero removed.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

from lightning.pytorch.callbacks import Callback

from ..pruner import Pruner
from ..structure import CompactionReport
from .hf import unwrap_optimizer

__all__ = ["LightningPrunerCallback"]


class LightningPrunerCallback(Callback):
    """Drive ``pruner`` from ``lightning.Trainer`` (automatic optimization, one optimizer).

    Build the Pruner on the LightningModule (or the network inside it) with ``total_steps`` equal
    to the run's optimizer steps (``trainer.estimated_stepping_batches``; a mismatch is warned about).
    A method that owns its optimizer (OTOv2's DHSPG) gives it from ``configure_optimizers``:
    ``return pruner.build_optimizer(TrainSettings(...))``; otherwise the module's optimizer is bound
    at ``on_train_start``. ``compact_at_end`` compacts when training ends (report in :attr:`report`).

    Example::

        pruner = Pruner(module.net, example, PruneSettings(target_macs_fraction=0.7), total_steps=200)
        lightning.Trainer(max_steps=200, callbacks=[LightningPrunerCallback(pruner)]).fit(module, loader)
    """

    def __init__(self, pruner: Pruner, *, compact_at_end: bool = True) -> None:
        self.pruner = pruner
        self.compact_at_end = compact_at_end
        self.report: CompactionReport | None = None
        self._steps_seen = 0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if len(trainer.optimizers) != 1:
            raise ValueError(f"LightningPrunerCallback needs exactly one optimizer, got {len(trainer.optimizers)}")
        self.pruner.bind(unwrap_optimizer(trainer.optimizers[0]))
        self._steps_seen = int(trainer.global_step)
        steps = trainer.estimated_stepping_batches
        if isinstance(steps, int) and steps != self.pruner.total_steps:
            warnings.warn(
                f"the Trainer runs {steps} optimizer steps but the Pruner was built with total_steps="
                f"{self.pruner.total_steps}: its schedule (selections, decay, recovery) will not fit the run",
                stacklevel=2,
            )

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self.pruner.after_backward()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        while self._steps_seen < trainer.global_step:  # one call per optimizer step (none mid-accumulation)
            self._steps_seen += 1
            self.pruner.after_step(SimpleNamespace(last_step_skipped_flag=False))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.compact_at_end:
            self.report = self.pruner.compact()
        else:
            self.pruner.finish()
