"""Training hooks: the points where pruning methods plug into the loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from decayprune.config.train import TrainSettings
    from decayprune.train.trainer import Trainer

__all__ = ["TrainHook"]


class TrainHook:
    """Base class of training hooks; every method is a no-op, override what you need.

    Order inside one optimizer step: forward, loss, ``zero_grad``, backward,
    (AMP unscale), :meth:`after_backward`, ``optimizer.step()``, ``scheduler.step()``,
    :meth:`after_step`. Hooks run in the order they were given to the trainer.

    Example:
        >>> class CountSteps(TrainHook):
        ...     def __init__(self):
        ...         self.steps = 0
        ...     def after_step(self, trainer):
        ...         self.steps += 1
        ...     def state_dict(self):
        ...         return {"steps": self.steps}
        ...     def load_state_dict(self, state):
        ...         self.steps = state["steps"]
        >>> CountSteps().state_dict()
        {'steps': 0}
    """

    def provide_optimizer(self, model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer | None:
        """Return the optimizer the Trainer should use (e.g. a pruning method's own), or None.

        Asked once, when the Trainer is built without an explicit optimizer; the first hook
        that returns one wins, otherwise the Trainer builds its default from the settings.
        """
        return None

    def on_train_start(self, trainer: Trainer) -> None:
        """Called once when :meth:`Trainer.fit` starts (after a resume has been restored)."""

    def after_backward(self, trainer: Trainer) -> None:
        """Called when gradients are ready (and unscaled), before ``optimizer.step()``."""

    def after_step(self, trainer: Trainer) -> None:
        """Called after ``optimizer.step()`` and ``scheduler.step()``; ``trainer.global_step`` counts it."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        """Called after each epoch with its 0-based index and metrics; added JSON values reach metrics.jsonl."""

    def on_train_end(self, trainer: Trainer) -> None:
        """Called once when :meth:`Trainer.fit` finishes normally."""

    def state_dict(self) -> dict[str, Any]:
        """Return the hook's state: a nested dict of tensors and JSON values (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; tensors arrive on the CPU."""
