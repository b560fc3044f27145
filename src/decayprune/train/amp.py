"""Mixed precision: the autocast dtype of a run, its loss scaler, and whether a scaled step was skipped.

``TrainSettings.amp`` is ``"off"``, ``"bf16"`` (bfloat16 autocast, no loss scaling: bfloat16 has
float32's exponent range) or ``"fp16"`` (float16 autocast with a :class:`torch.amp.GradScaler`).
Both work on CUDA and on the CPU (``bf16`` on CUDA needs a GPU that supports it).

A :class:`~torch.amp.GradScaler` skips ``optimizer.step()`` when it finds inf/NaN gradients and
then multiplies its scale by ``backoff_factor`` (< 1, checked by GradScaler); otherwise the scale
stays or grows. So "the scale after ``update()`` is below the scale before ``step()``" is exactly
"this step was skipped", and comparing the two tensors needs no host sync (:func:`step_skipped`).

Example:
    >>> autocast_dtype("bf16"), autocast_dtype("off")
    (torch.bfloat16, None)
    >>> make_scaler("bf16", torch.device("cpu")).is_enabled()
    False
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from ..config.amp import AmpMode, amp_problem

__all__ = ["AmpMode", "amp_problem", "autocast", "autocast_dtype", "make_scaler", "scale_of", "step_skipped"]

_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(mode: str) -> torch.dtype | None:
    """The autocast dtype of ``mode`` (None for ``"off"``)."""
    return _DTYPES.get(mode)


def autocast(mode: str, device: torch.device) -> AbstractContextManager[object]:
    """The autocast context of ``mode`` on ``device`` (a no-op for ``"off"``)."""
    dtype = autocast_dtype(mode)
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def make_scaler(mode: str, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler for ``device``, enabled only for ``"fp16"`` (bf16 needs no loss scaling)."""
    return torch.amp.GradScaler(device.type if device.type in ("cpu", "cuda") else "cuda", enabled=mode == "fp16")


def scale_of(scaler: torch.amp.GradScaler | None) -> torch.Tensor | None:
    """A copy of ``scaler``'s current scale on its device (None when disabled or not used yet); no sync."""
    if scaler is None or not scaler.is_enabled():
        return None
    scale = scaler._get_scale_async()
    return None if scale is None else scale.clone()


def step_skipped(scaler: torch.amp.GradScaler | None, before: torch.Tensor | None) -> bool | torch.Tensor:
    """Whether the optimizer step between ``before = scale_of(scaler)`` and ``scaler.update()`` was skipped.

    A device bool tensor when scaling is on (no host sync), else ``False``.

    Example:
        >>> import torch.nn as nn
        >>> net = nn.Linear(2, 1)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> scaler = torch.amp.GradScaler("cpu")
        >>> scaler.scale(net(torch.ones(1, 2)).sum() * float("inf")).backward()
        >>> before = scale_of(scaler)
        >>> scaler.step(opt); scaler.update()
        >>> bool(step_skipped(scaler, before))
        True
    """
    after = scale_of(scaler)
    if before is None or after is None:
        return False
    return after < before
