"""``mlp``: flatten -> Linear -> ReLU -> Linear -> ReLU -> Linear.

The input layer needs the flattened feature count, ``in_channels * H * W``; pass
``image_size=(H, W)`` (default ``(8, 8)``, the scikit-learn digits) so it can be computed.
Hidden sizes default to ``(256, 128)`` and are scaled by ``width``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from decayprune.models._common import check_args, scaled
from decayprune.models._registry import register_model

__all__ = ["MLP"]


class MLP(nn.Module):
    """Fully connected classifier over flattened images; final layer ``self.classifier``.

    Args:
        num_classes: Number of output logits.
        in_channels: Number of input image channels.
        width: Multiplier on the hidden sizes (rounded, at least 1).
        image_size: Input ``(H, W)``; inputs must have exactly this size.
        hidden: Hidden layer sizes before scaling by ``width``.

    Example:
        >>> import torch
        >>> MLP(num_classes=10, in_channels=1, image_size=(28, 28))(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
        image_size: Sequence[int] = (8, 8),
        hidden: Sequence[int] = (256, 128),
    ) -> None:
        super().__init__()
        check_args(num_classes, in_channels, width)
        size = tuple(image_size) if isinstance(image_size, Sequence) else ()
        if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size):
            raise ValueError(f"image_size must be a pair of ints >= 1 (H, W), got {image_size!r}")
        sizes = tuple(hidden) if isinstance(hidden, Sequence) else ()
        if len(sizes) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
            raise ValueError(f"hidden must be a pair of ints >= 1, got {hidden!r}")
        h1, h2 = (scaled(s, width) for s in sizes)
        self.image_size = size
        self.input_size = in_channels * size[0] * size[1]
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(self.input_size, h1)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(h1, h2)
        self.relu2 = nn.ReLU()
        self.classifier = nn.Linear(h2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        if x.shape[1] != self.input_size:
            raise ValueError(
                f"MLP expects inputs with {self.input_size} features per sample "
                f"(image_size={self.image_size}), got {x.shape[1]}"
            )
        return self.classifier(self.relu2(self.fc2(self.relu1(self.fc1(x)))))


@register_model("mlp")
def mlp(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    width: float = 1.0,
    image_size: Sequence[int] = (8, 8),
    hidden: Sequence[int] = (256, 128),
) -> MLP:
    """Three-layer MLP over ``in_channels x image_size`` inputs. See :class:`MLP`."""
    return MLP(num_classes=num_classes, in_channels=in_channels, width=width, image_size=image_size, hidden=hidden)
