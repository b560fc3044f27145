"""Learning-rate schedules as pure functions of the optimizer step.

The scheduler is stepped once per optimizer step (not per epoch), so a run resumed
in the middle of training follows exactly the same learning rates.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from decayprune.config.train import TrainSettings

__all__ = ["build_scheduler", "lr_at", "lr_factor"]


def lr_factor(step: int, settings: TrainSettings, steps_per_epoch: int) -> float:
    """Multiplier of the peak learning rate for the optimizer step ``step`` (0-based).

    Warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_epochs`` epochs.
    After it, with ``t`` steps since warm-up and ``T`` post-warm-up steps in total:
    ``constant`` 1; ``cosine`` ``0.5 * (1 + cos(pi * t / T))``; ``step``
    ``gamma ** (number of milestones m with step >= m * steps_per_epoch)``.

    Args:
        step: Number of optimizer steps already taken.
        settings: Supplies ``schedule``, ``epochs``, ``warmup_epochs``, ``milestones``, ``gamma``.
        steps_per_epoch: Optimizer steps in one epoch (``len(train_loader)``).

    Returns:
        The factor, in ``[0, 1]``.

    Example:
        >>> s = TrainSettings(epochs=10, schedule="cosine")
        >>> lr_factor(0, s, 100), round(lr_factor(500, s, 100), 6)
        (1.0, 0.5)
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    warmup_steps = settings.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if settings.schedule == "constant":
        return 1.0
    if settings.schedule == "step":
        passed = sum(1 for m in settings.milestones if step >= m * steps_per_epoch)
        return settings.gamma**passed
    total = settings.epochs * steps_per_epoch - warmup_steps
    if total <= 0:
        return 1.0
    progress = min(step - warmup_steps, total) / total
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(step: int, settings: TrainSettings, steps_per_epoch: int) -> float:
    """Learning rate used by the optimizer step ``step``: ``settings.lr * lr_factor(...)``.

    Example:
        >>> s = TrainSettings(epochs=4, lr=0.1, schedule="step", milestones=[2], gamma=0.1)
        >>> lr_at(0, s, 10), round(lr_at(20, s, 10), 12)
        (0.1, 0.01)
    """
    return settings.lr * lr_factor(step, settings, steps_per_epoch)


def build_scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings, steps_per_epoch: int) -> LambdaLR:
    """Build a per-step ``LambdaLR`` that scales each group's initial lr by :func:`lr_factor`.

    Call ``scheduler.step()`` after every ``optimizer.step()``.

    Example:
        >>> opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
        >>> sched = build_scheduler(opt, TrainSettings(epochs=1, lr=0.1, warmup_epochs=1), 4)
        >>> opt.param_groups[0]["lr"]
        0.025
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")

    def factor(step: int) -> float:  # a plain function: LambdaLR.state_dict stays JSON-able
        return lr_factor(step, settings, steps_per_epoch)

    return LambdaLR(optimizer, factor)
