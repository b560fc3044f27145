"""CIFAR ResNets (He et al., 2016, Sec. 4.2): ``resnet20``, ``resnet32``, ``resnet56``, ``resnet110``.

A 3x3 stem conv with 16 channels, then three stages of ``n = (depth - 2) / 6`` basic blocks
with 16, 32 and 64 channels (stride 2 at the first block of stages 2 and 3), global average
pooling and a linear classifier. Shortcuts use option B: a 1x1 conv + BN projection wherever
the shape changes, identity elsewhere (the variant DepGraph's CIFAR benchmark prunes).

At 32x32 input and 10 classes ResNet-56 has ~0.86 M parameters and ~126 M MACs, ResNet-20
~0.27 M and ~41 M. Global average pooling makes any input size >= 4x4 work.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from decayprune.models._common import check_args, init_weights, scaled
from decayprune.models._registry import register_model

__all__ = ["BasicBlock", "CifarResNet"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (projection when the shape changes)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth ``6n + 2``; the final layer is ``self.classifier``.

    Args:
        depth: Total depth; ``depth - 2`` must be a positive multiple of 6.
        num_classes: Number of output logits.
        in_channels: Number of input image channels.
        width: Multiplier on the 16/32/64 channel counts (rounded, at least 1).

    Example:
        >>> import torch
        >>> CifarResNet(20, num_classes=10)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, depth: int, *, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        check_args(num_classes, in_channels, width)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...), got {depth!r}")
        n = (depth - 2) // 6
        widths = [scaled(c, width) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        stages = []
        in_planes = widths[0]
        for i, planes in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(in_planes, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.classifier(self.flatten(self.pool(x)))


def _make(depth: int):
    def build(*, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> CifarResNet:
        return CifarResNet(depth, num_classes=num_classes, in_channels=in_channels, width=width)

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"CIFAR ResNet-{depth} (option-B shortcuts). See :class:`CifarResNet`."
    return build


for _depth in (20, 32, 56, 110):
    register_model(f"resnet{_depth}")(_make(_depth))
del _depth
