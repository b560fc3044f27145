"""CIFAR VGG with batch norm (Simonyan & Zisserman, 2015): ``vgg16``, ``vgg19``.

The conv stack is the usual VGG configuration (3x3 conv-BN-ReLU, 2x2 max pools); the
classifier is a single ``Linear(512 * width, num_classes)``, as in the common CIFAR
VGG-16-BN. At 32x32 input and 10 classes VGG-16 has ~14.7 M parameters and ~313 M MACs.

Input size: the five max pools divide each side by 32, so inputs must be at least 32x32;
an adaptive average pool before the classifier makes any larger size work (at 32x32 it is
an identity).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from decayprune.models._common import check_args, init_weights, scaled
from decayprune.models._registry import register_model

__all__ = ["VGG", "VGG_CONFIGS"]

#: Conv stacks: ints are 3x3 conv output channels, "M" a 2x2 max pool.
VGG_CONFIGS: dict[int, list[int | str]] = {
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG-BN for CIFAR-sized inputs; the final layer is ``self.classifier``.

    Args:
        depth: 16 or 19.
        num_classes: Number of output logits.
        in_channels: Number of input image channels.
        width: Multiplier on every conv's channel count (rounded, at least 1).

    Example:
        >>> import torch
        >>> VGG(16, num_classes=10, width=0.25)(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """

    def __init__(self, depth: int, *, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        check_args(num_classes, in_channels, width)
        if depth not in VGG_CONFIGS:
            raise ValueError(f"VGG depth must be one of {sorted(VGG_CONFIGS)}, got {depth!r}")
        layers: list[nn.Module] = []
        channels = in_channels
        for item in VGG_CONFIGS[depth]:
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


@register_model("vgg16")
def vgg16(*, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> VGG:
    """CIFAR VGG-16-BN. See :class:`VGG`."""
    return VGG(16, num_classes=num_classes, in_channels=in_channels, width=width)


@register_model("vgg19")
def vgg19(*, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> VGG:
    """CIFAR VGG-19-BN. See :class:`VGG`."""
    return VGG(19, num_classes=num_classes, in_channels=in_channels, width=width)
