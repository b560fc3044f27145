"""Training hooks the jobs add to every run: stop on a diverged loss, count time across resumes.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from decayprune.train import Trainer, TrainSettings
    >>> data = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))] * 2
    >>> clock = ElapsedTime()
    >>> _ = Trainer(nn.Linear(4, 3), data, data, TrainSettings(epochs=1, device="cpu"),
    ...             hooks=[DivergenceGuard(), clock], progress=False).fit()
    >>> clock.total_s > 0
    True
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import torch

from ..errors import TrainingDivergedError
from ..train import TrainHook

if TYPE_CHECKING:
    from ..train import Trainer

__all__ = ["DivergenceGuard", "ElapsedTime"]


class DivergenceGuard(TrainHook):
    """Stop training with :class:`TrainingDivergedError` when the loss becomes NaN or infinite.

    On the CPU every step's loss is checked (free); on an accelerator the epoch's mean loss is
    checked at its end, so the loop never waits for the device. The error is raised before the
    epoch's checkpoint is written: the run folder keeps its last good checkpoint.
    """

    def after_step(self, trainer: Trainer) -> None:
        loss = trainer.last_loss_tensor
        if loss is not None and loss.device.type == "cpu" and not bool(torch.isfinite(loss)):
            self._stop(trainer, float(loss))

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        value = metrics.get("train_loss")
        if isinstance(value, float) and not math.isfinite(value):
            self._stop(trainer, value)

    @staticmethod
    def _stop(trainer: Trainer, value: float) -> None:
        raise TrainingDivergedError(
            f"training diverged: the loss became {value} in epoch {trainer.epoch + 1} (step {trainer.global_step}); "
            "lower the learning rate (lr) or check the data; the last good checkpoint is kept",
            epoch=trainer.epoch,
            step=trainer.global_step,
        )


class ElapsedTime(TrainHook):
    """Training seconds of a run summed over all its invocations (saved in the checkpoint).

    Time after the last checkpoint of an interrupted invocation is not counted: it is redone.
    """

    def __init__(self) -> None:
        self._before = 0.0
        self._started: float | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        self._started = time.perf_counter()

    def on_train_end(self, trainer: Trainer) -> None:
        self._before = self.total_s
        self._started = None

    @property
    def total_s(self) -> float:
        """Seconds counted so far (earlier invocations included)."""
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self._before + running

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed_s": self.total_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._before = float(state.get("elapsed_s", 0.0))
        self._started = None
