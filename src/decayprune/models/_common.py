"""Small helpers shared by the model families (argument checks, width scaling)."""

from __future__ import annotations

import math

import torch.nn as nn

__all__ = ["check_args", "init_weights", "scaled"]


def check_args(num_classes: int, in_channels: int, width: float) -> None:
    """Validate the three arguments every model constructor takes.

    Raises:
        ValueError: If ``num_classes`` or ``in_channels`` is not a positive int, or ``width``
            is not a finite number > 0.
    """
    for key, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be an int >= 1, got {value!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a finite number > 0, got {width!r}")


def scaled(channels: int, width: float) -> int:
    """Scale a channel count by ``width``, rounded to the nearest int and at least 1.

    Example:
        >>> scaled(64, 0.5), scaled(16, 0.01)
        (32, 1)
    """
    return max(1, int(round(channels * width)))


def init_weights(model: nn.Module) -> None:
    """Initialize in place: Kaiming-normal (fan-out) convs, BN weight 1 / bias 0.

    Linear layers keep PyTorch's default initialization.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
