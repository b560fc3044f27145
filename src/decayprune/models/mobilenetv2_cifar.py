"""``mobilenetv2_cifar``: MobileNetV2 (Sandler et al., 2018) adapted to 32x32 inputs.

Inverted residual blocks (1x1 expand - 3x3 depthwise - 1x1 linear projection, residual when
stride is 1 and the shape is kept). CIFAR adaptation: the stem conv and the second stage use
stride 1 instead of 2, so a 32x32 input is reduced 8x (to 4x4) before the 1x1 head conv and
global average pooling. ``width`` scales every channel count, rounded to the nearest int
(not to multiples of 8); the 1280-channel head is scaled only when ``width > 1``, as in the
original. ~2.2 M parameters and ~95 M MACs at 32x32, 10 classes, ``width=1``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from decayprune.models._common import check_args, init_weights, scaled
from decayprune.models._registry import register_model

__all__ = ["InvertedResidual", "MobileNetV2Cifar"]

#: (expansion t, output channels c, repeats n, first stride s) per stage; CIFAR strides.
_STAGES: list[tuple[int, int, int, int]] = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(),
    )


class InvertedResidual(nn.Module):
    """Expand (skipped when ``expansion == 1``), depthwise 3x3, linear 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn_relu6(cin, hidden, 1))
        layers += [
            _conv_bn_relu6(hidden, hidden, 3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2Cifar(nn.Module):
    """MobileNetV2 for 32x32 inputs; the final layer is ``self.classifier``.

    Args:
        num_classes: Number of output logits.
        in_channels: Number of input image channels.
        width: Width multiplier on every channel count (rounded, at least 1).

    Example:
        >>> import torch
        >>> MobileNetV2Cifar(num_classes=10, width=0.25)(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        check_args(num_classes, in_channels, width)
        channels = scaled(32, width)
        blocks: list[nn.Module] = [_conv_bn_relu6(in_channels, channels, 3, stride=1)]
        for expansion, c, repeats, stride in _STAGES:
            out = scaled(c, width)
            for i in range(repeats):
                blocks.append(InvertedResidual(channels, out, stride if i == 0 else 1, expansion))
                channels = out
        head = scaled(1280, max(1.0, width))
        blocks.append(_conv_bn_relu6(channels, head, 1))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(head, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.flatten(self.pool(self.features(x)))))


@register_model("mobilenetv2_cifar")
def mobilenetv2_cifar(*, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> MobileNetV2Cifar:
    """CIFAR MobileNetV2 with depthwise convs. See :class:`MobileNetV2Cifar`."""
    return MobileNetV2Cifar(num_classes=num_classes, in_channels=in_channels, width=width)
