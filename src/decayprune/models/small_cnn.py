"""``small_cnn``: a small VGG-style CNN for small images (8x8 digits, 28x28 Fashion-MNIST).

Layout (channels at ``width=1``): conv 32 - conv 32 - max pool - conv 64 - conv 64 - max pool -
conv 128 - global average pool - linear; every conv is 3x3 conv-BN-ReLU. Two 2x2 pools take
8x8 to 2x2 (never smaller) and 28x28 to 7x7; global average pooling makes any input size
>= 4x4 work. ~0.14 M parameters at ``width=1``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from decayprune.models._common import check_args, init_weights, scaled
from decayprune.models._registry import register_model

__all__ = ["SmallCNN"]

_CONFIG: list[int | str] = [32, 32, "M", 64, 64, "M", 128]


class SmallCNN(nn.Module):
    """Small conv-BN-ReLU network with global average pooling; final layer ``self.classifier``.

    Args:
        num_classes: Number of output logits.
        in_channels: Number of input image channels.
        width: Multiplier on every conv's channel count (rounded, at least 1).

    Example:
        >>> import torch
        >>> SmallCNN(num_classes=10, in_channels=1)(torch.zeros(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        check_args(num_classes, in_channels, width)
        layers: list[nn.Module] = []
        channels = in_channels
        for item in _CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                out = scaled(int(item), width)
                layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
                channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


@register_model("small_cnn")
def small_cnn(*, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> SmallCNN:
    """Small VGG-style CNN for 8x8 / 28x28 images. See :class:`SmallCNN`."""
    return SmallCNN(num_classes=num_classes, in_channels=in_channels, width=width)
