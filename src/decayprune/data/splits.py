"""The in-memory dataset container and the helpers that normalize and subset it."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from decayprune.data.seeding import derive_generator

__all__ = ["DatasetSplits", "normalize_splits", "subset_splits", "channel_stats", "validate_subset_size"]

_MIN_STD = 1e-6


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """A train/test pair of image tensors held in memory.

    Attributes:
        name: Registry name of the dataset (for example ``"digits"``).
        train_images: ``float32`` tensor of shape ``(N, C, H, W)``.
        train_labels: ``int64`` tensor of shape ``(N,)`` with values in ``[0, num_classes)``.
        test_images: ``float32`` tensor of shape ``(M, C, H, W)``.
        test_labels: ``int64`` tensor of shape ``(M,)``.
        num_classes: Number of classes.
        in_channels: ``C``.
        image_size: ``(H, W)``.
        augment: Whether random crop + horizontal flip suits the images (natural colour images).
        mean: Per-channel mean subtracted by normalization (empty when not normalized).
        std: Per-channel std divided by normalization (empty when not normalized).
        class_names: Name of each class when known, else empty.

    Example:
        >>> import torch
        >>> s = DatasetSplits("toy", torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 0, 1]),
        ...                   torch.zeros(2, 1, 2, 2), torch.tensor([0, 1]), 2, 1, (2, 2), False)
        >>> s.input_shape, s.num_train, s.num_test
        ((1, 2, 2), 4, 2)
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    augment: bool
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"dataset {self.name!r}: {len(self.class_names)} class names for {self.num_classes} classes"
            )
        expected = (self.in_channels, *self.image_size)
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if images.dim() != 4 or tuple(images.shape[1:]) != expected:
                raise ValueError(
                    f"dataset {self.name!r}: {split}_images has shape {tuple(images.shape)}, "
                    f"expected (N, {', '.join(map(str, expected))})"
                )
            if images.dtype != torch.float32:
                raise ValueError(f"dataset {self.name!r}: {split}_images must be float32, got {images.dtype}")
            if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
                raise ValueError(
                    f"dataset {self.name!r}: {split}_labels must be int64 of shape ({images.shape[0]},), "
                    f"got {labels.dtype} {tuple(labels.shape)}"
                )
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise ValueError(
                    f"dataset {self.name!r}: {split}_labels must lie in [0, {self.num_classes}), "
                    f"got [{int(labels.min())}, {int(labels.max())}]"
                )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return (self.in_channels, *self.image_size)

    @property
    def num_train(self) -> int:
        """Number of training images."""
        return int(self.train_images.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test images."""
        return int(self.test_images.shape[0])

    @property
    def normalized(self) -> bool:
        """Whether the images were normalized by :func:`normalize_splits`."""
        return bool(self.mean)

    def __repr__(self) -> str:
        return (
            f"DatasetSplits(name={self.name!r}, train={self.num_train}, test={self.num_test}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, augment={self.augment})"
        )


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std of an ``(N, C, H, W)`` tensor, returned as float64.

    Example:
        >>> mean, std = channel_stats(torch.ones(2, 3, 4, 4))
        >>> mean.tolist(), std.tolist()
        ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    """
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"channel_stats needs a non-empty (N, C, H, W) tensor, got shape {tuple(images.shape)}")
    var, mean = torch.var_mean(images, dim=(0, 2, 3), unbiased=False)  # Welford: accurate in float32
    return mean.to(torch.float64), var.clamp_min(0.0).to(torch.float64).sqrt()


def normalize_splits(splits: DatasetSplits) -> DatasetSplits:
    """Standardize both splits with the per-channel mean/std of the train split.

    A channel with (near) zero spread is only centred. The input tensors are not modified.

    Example:
        >>> s = DatasetSplits("toy", torch.rand(8, 1, 2, 2), torch.zeros(8, dtype=torch.long),
        ...                   torch.rand(2, 1, 2, 2), torch.zeros(2, dtype=torch.long), 1, 1, (2, 2), False)
        >>> n = normalize_splits(s)
        >>> abs(float(n.train_images.mean())) < 1e-5
        True
    """
    mean, std = channel_stats(splits.train_images)
    std = torch.where(std < _MIN_STD, torch.ones_like(std), std)
    mean32 = mean.to(torch.float32).view(1, -1, 1, 1)
    std32 = std.to(torch.float32).view(1, -1, 1, 1)
    return dataclasses.replace(
        splits,
        train_images=splits.train_images.sub(mean32).div_(std32),
        test_images=splits.test_images.sub(mean32).div_(std32),
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )


def validate_subset_size(size: int | None, what: str) -> None:
    """Raise ValueError unless ``size`` is None or a positive int (``what`` names the argument).

    Example:
        >>> validate_subset_size(10, "train_subset")
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise ValueError(f"{what} must be a positive integer or None, got {size!r}")


def _check_subset(size: int | None, available: int, what: str) -> int | None:
    validate_subset_size(size, what)
    if size is None:
        return None
    if size >= available:
        if size > available:
            warnings.warn(
                f"{what}={size} exceeds the {available} images available; using all of them",
                stacklevel=3,
            )
        return None
    return size


def subset_splits(
    splits: DatasetSplits,
    train_subset: int | None = None,
    test_subset: int | None = None,
    *,
    seed: int = 0,
) -> DatasetSplits:
    """Keep the first ``n`` images of each split after a shuffle seeded by ``seed``.

    ``None`` keeps a split whole; a size above the split's length keeps it whole with a warning.
    The kept images stay in their original relative order.

    Example:
        >>> s = DatasetSplits("toy", torch.zeros(10, 1, 2, 2), torch.zeros(10, dtype=torch.long),
        ...                   torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long), 1, 1, (2, 2), False)
        >>> subset_splits(s, train_subset=3).num_train
        3
    """
    n_train = _check_subset(train_subset, splits.num_train, "train_subset")
    n_test = _check_subset(test_subset, splits.num_test, "test_subset")
    changes: dict[str, Any] = {}
    for split, size, stream in (("train", n_train, 1), ("test", n_test, 2)):
        if size is None:
            continue
        images = getattr(splits, f"{split}_images")
        generator = derive_generator(seed, "subset", stream)
        keep = torch.randperm(images.shape[0], generator=generator)[:size].sort().values
        changes[f"{split}_images"] = images[keep]
        changes[f"{split}_labels"] = getattr(splits, f"{split}_labels")[keep]
    return dataclasses.replace(splits, **changes) if changes else splits
