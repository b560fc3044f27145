"""A Hugging Face ``TrainerCallback`` that runs a :class:`~decayprune.Pruner` inside ``transformers.Trainer``.

Where the Pruner's calls land in ``Trainer``'s loop (transformers >= 4.40; checked on 5.x)::

    for each micro-batch:  training_step -> accelerator.backward(loss)   # grads accumulate
    at each optimizer step (every gradient_accumulation_steps micro-batches):
        clip_grad_norm (max_grad_norm)
        on_pre_optimizer_step   -> pruner.after_backward()   # keep-at-zero grads, SR inputs, regulariser
        optimizer.step()
        on_optimizer_step       -> pruner.after_step()       # keep-at-zero, decay, releases, selections
        lr_scheduler.step(); zero_grad(); on_step_end
    on_train_end                -> pruner.compact()          # when compact_at_end

So the Pruner sees the accumulated gradient of a whole optimizer step, after clipping: the clip
norm is computed before keep-at-zero zeroes the pruned groups' gradients and before a method's
regulariser (e.g. DepGraph's group lasso) is added, which is therefore not clipped.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

from transformers import TrainerCallback

from ..pruner import Pruner
from ..structure import CompactionReport

__all__ = ["PrunerCallback", "unwrap_optimizer"]


def unwrap_optimizer(optimizer: Any) -> Any:
    """The torch optimizer inside accelerate's / Lightning's wrappers (``.optimizer``), else ``optimizer``."""
    inner = getattr(optimizer, "optimizer", None)
    return inner if inner is not None and hasattr(inner, "param_groups") else optimizer


class PrunerCallback(TrainerCallback):
    """Drive ``pruner`` from ``transformers.Trainer``: its three calls at the points above.

    The Pruner must be built on the model given to the Trainer, with ``total_steps`` equal to the
    run's optimizer steps (``max_steps``, or epochs x steps per epoch; a mismatch is warned about at
    the start). A method that owns its optimizer (OTOv2's DHSPG) gives it through
    ``Trainer(..., optimizers=(pruner.build_optimizer(TrainSettings(...)), None))``; otherwise the
    Trainer's own optimizer is bound at ``on_train_begin`` (its state of pruned groups is held at zero
    and remapped at compaction). ``compact_at_end`` compacts when training ends (the report is
    :attr:`report`); set it False to compare the masked model first and call ``pruner.compact()``.

    Example (``trainer.train()`` prunes; ``callback.report`` says what was removed)::

        pruner = Pruner(model, example_ids, PruneSettings(target_macs_fraction=0.7), total_steps=200)
        callback = PrunerCallback(pruner)
        trainer = transformers.Trainer(model=model, args=TrainingArguments(..., max_steps=200),
                                       train_dataset=data, callbacks=[callback])
        trainer.train()
    """

    def __init__(self, pruner: Pruner, *, compact_at_end: bool = True) -> None:
        self.pruner = pruner
        self.compact_at_end = compact_at_end
        self.report: CompactionReport | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is not None and model is not self.pruner.model:
            raise ValueError("the Trainer's model is not the model the Pruner was built on")
        optimizer = kwargs.get("optimizer")
        if optimizer is not None:
            self.pruner.bind(unwrap_optimizer(optimizer))
        steps = getattr(state, "max_steps", 0)
        if steps and steps != self.pruner.total_steps:
            warnings.warn(
                f"the Trainer runs {steps} optimizer steps but the Pruner was built with total_steps="
                f"{self.pruner.total_steps}: its schedule (selections, decay, recovery) will not fit the run",
                stacklevel=2,
            )

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.pruner.after_backward()

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        skipped = bool(getattr(kwargs.get("optimizer"), "step_was_skipped", False))  # fp16 GradScaler skip
        self.pruner.after_step(SimpleNamespace(last_step_skipped_flag=skipped))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.compact_at_end:
            self.report = self.pruner.compact()
        else:
            self.pruner.finish()
