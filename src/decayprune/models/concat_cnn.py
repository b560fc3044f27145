"""``concat_cnn``: a small DenseNet-like CNN whose layer outputs are concatenated.

Stem conv-BN-ReLU (24 channels), then a dense block of three conv-BN-ReLU layers; each layer
reads the concatenation (``torch.cat`` along channels) of the stem output and all earlier
layer outputs and adds 16 new channels. A 1x1 transition conv-BN-ReLU (48 channels) reads the
full concatenation, followed by a 2x2 average pool, one more 3x3 conv-BN-ReLU (64 channels),
global average pooling and a linear classifier. (Channel counts at ``width=1``.)

It exists to exercise concatenation dependencies in pruning: removing a channel of one layer
removes the matching input slice of every later consumer of the concatenation. Global average
pooling makes any input size >= 2x2 work.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from decayprune.models._common import check_args, init_weights, scaled
from decayprune.models._registry import register_model

__all__ = ["ConcatCNN"]


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class ConcatCNN(nn.Module):
    """Dense-block CNN (concatenated features); the final layer is ``self.classifier``.

    Args:
        num_classes: Number of output logits.
        in_channels: Number of input image channels.
        width: Multiplier on every channel count (rounded, at least 1).
        num_dense_layers: Layers in the dense block (>= 1).

    Example:
        >>> import torch
        >>> ConcatCNN(num_classes=10, in_channels=1)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, *, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, num_dense_layers: int = 3
    ) -> None:
        super().__init__()
        check_args(num_classes, in_channels, width)
        if isinstance(num_dense_layers, bool) or not isinstance(num_dense_layers, int) or num_dense_layers < 1:
            raise ValueError(f"num_dense_layers must be an int >= 1, got {num_dense_layers!r}")
        stem, growth = scaled(24, width), scaled(16, width)
        self.stem = _conv_bn_relu(in_channels, stem, 3)
        self.dense = nn.ModuleList(_conv_bn_relu(stem + i * growth, growth, 3) for i in range(num_dense_layers))
        transition = scaled(48, width)
        self.transition = _conv_bn_relu(stem + num_dense_layers * growth, transition, 1)
        self.down = nn.AvgPool2d(2, 2)
        head = scaled(64, width)
        self.head = _conv_bn_relu(transition, head, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(head, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stem(x)
        for layer in self.dense:
            features = torch.cat([features, layer(features)], dim=1)
        x = self.head(self.down(self.transition(features)))
        return self.classifier(self.flatten(self.pool(x)))


@register_model("concat_cnn")
def concat_cnn(
    *, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, num_dense_layers: int = 3
) -> ConcatCNN:
    """Small DenseNet-like CNN with channel concatenation. See :class:`ConcatCNN`."""
    return ConcatCNN(num_classes=num_classes, in_channels=in_channels, width=width, num_dense_layers=num_dense_layers)
