"""Passes over calibration data for data-driven criteria: forward/backward loops and activation capture.

Criteria call these from :meth:`Criterion.score`; they run on the model's device, in eval mode
(batch-norm statistics are read, never updated), and leave the model's mode as they found it.
Gradients they produce stay in ``.grad`` until the next training step clears them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from .distributed import all_reduce_mean

if TYPE_CHECKING:
    from .view import ScoringView

__all__ = ["backward_passes", "capture_outputs", "eval_mode", "forward_passes"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def forward_passes(ctx: "ScoringView", num_batches: int) -> Iterator[tuple[Any, torch.Tensor, torch.Tensor]]:
    """Yield ``(outputs, inputs, labels)`` for up to ``num_batches`` calibration batches, no grad."""
    with eval_mode(ctx.model), torch.no_grad():
        for inputs, labels in ctx.calibration_batches(num_batches):
            yield ctx.model(inputs), inputs, labels


def backward_passes(ctx: "ScoringView", num_batches: int, after_backward: Callable[[], None]) -> int:
    """Forward, loss and backward on up to ``num_batches`` batches, calling ``after_backward`` each time.

    Gradients are cleared before each batch, so ``after_backward`` sees that batch's alone.
    Returns the number of batches run.
    """
    count = 0
    with eval_mode(ctx.model):
        for inputs, labels in ctx.calibration_batches(num_batches):
            ctx.model.zero_grad(set_to_none=True)
            ctx.loss_fn(ctx.model(inputs), labels).backward()
            after_backward()
            count += 1
    ctx.model.zero_grad(set_to_none=True)
    return count


@contextmanager
def capture_outputs(modules: Sequence[nn.Module], retain_grad: bool = False) -> Iterator[dict[nn.Module, torch.Tensor]]:
    """Record the latest output of each module (with ``retain_grad`` its gradient is kept too).

    Example:
        >>> lin = nn.Linear(2, 3)
        >>> with capture_outputs([lin]) as seen:
        ...     _ = lin(torch.ones(1, 2))
        >>> seen[lin].shape
        torch.Size([1, 3])
    """
    seen: dict[nn.Module, torch.Tensor] = {}

    def record(module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            if retain_grad and output.requires_grad:
                output.retain_grad()
            seen[module] = output

    handles = [m.register_forward_hook(record) for m in modules]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


__all__ += ["all_reduce_mean"]
