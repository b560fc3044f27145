"""Batches straight from in-memory tensors: seeded shuffling, rank sharding and crop+flip augmentation."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from decayprune.data.seeding import derive_generator

__all__ = ["TensorLoader", "augment_batch"]


def augment_batch(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop (after zero padding by ``padding`` pixels) and random horizontal flip, per image.

    Vectorised: one ``torch.gather`` over the flattened padded images builds the whole batch.
    Images are usually normalized already, so the zero padding is the mean colour. The random draws
    come from ``generator`` (CPU or on the images' device), so the same generator state gives the
    same batch.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> augment_batch(torch.rand(8, 3, 32, 32), g).shape
        torch.Size([8, 3, 32, 32])
    """
    if images.dim() != 4:
        raise ValueError(f"augment_batch needs an (N, C, H, W) tensor, got shape {tuple(images.shape)}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    count, channels, height, width = images.shape
    if count == 0:
        return images.clone()
    draw_device = generator.device
    dy = torch.randint(0, 2 * padding + 1, (count,), generator=generator, device=draw_device)
    dx = torch.randint(0, 2 * padding + 1, (count,), generator=generator, device=draw_device)
    flip = torch.rand(count, generator=generator, device=draw_device) < 0.5
    dy, dx, flip = dy.to(images.device), dx.to(images.device), flip.to(images.device)

    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    padded_width = width + 2 * padding
    row_range = torch.arange(height, device=images.device)
    col_range = torch.arange(width, device=images.device)
    rows = dy.view(-1, 1) + row_range.view(1, -1)  # (N, H) rows of the padded image
    cols = torch.where(flip.view(-1, 1), width - 1 - col_range.view(1, -1), col_range.view(1, -1))
    cols = dx.view(-1, 1) + cols  # (N, W), mirrored for flipped images
    flat = (rows.view(count, height, 1) * padded_width + cols.view(count, 1, width)).view(count, 1, -1)
    out = padded.reshape(count, channels, -1).gather(2, flat.expand(count, channels, height * width))
    return out.view(count, channels, height, width)


class TensorLoader:
    """Iterate ``(images, labels)`` batches over tensors already in memory.

    The order (when ``shuffle``) and the augmentation draws are functions of ``(seed, epoch)``
    only, so a run is reproducible and resumable: call :meth:`set_epoch` at the start of every
    epoch (as with ``DistributedSampler``; without it every epoch repeats epoch 0's order).

    With ``world_size > 1`` every rank shuffles the same way, pads the order by repeating its
    start up to a multiple of ``world_size`` and keeps every ``world_size``-th index from
    ``rank``: shards are equal in size, disjoint apart from the padding, and cover every sample.
    ``pad=False`` (for evaluation) keeps the shards disjoint instead, one sample shorter on some ranks.

    ``device``: the tensors are moved there once, at construction (a no-op when already there),
    and batches are produced on it. Augmentation uses the padding of :func:`augment_batch`.

    Example:
        >>> x, y = torch.rand(10, 1, 4, 4), torch.arange(10)
        >>> loader = TensorLoader(x, y, batch_size=4, shuffle=True, seed=1)
        >>> loader.set_epoch(0)
        >>> [len(b[1]) for b in loader], len(loader)
        ([4, 4, 2], 3)
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
        padding: int = 4,
        pad: bool = True,
    ) -> None:
        if images.dim() < 1 or labels.dim() < 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                "images and labels must have the same first dimension, "
                f"got {tuple(images.shape)} and {tuple(labels.shape)}"
            )
        if images.shape[0] == 0:
            raise ValueError("TensorLoader needs at least one sample")
        for key, value in (("batch_size", batch_size), ("world_size", world_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        if augment and images.dim() != 4:
            raise ValueError(f"augment=True needs (N, C, H, W) images, got shape {tuple(images.shape)}")
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        self.images = images if device is None else images.to(device)
        self.labels = labels if device is None else labels.to(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = int(seed)
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.padding = padding
        self.pad = pad
        self.epoch = 0

    @property
    def dataset_size(self) -> int:
        """Number of samples across all ranks."""
        return int(self.images.shape[0])

    @property
    def num_samples(self) -> int:
        """Samples in this rank's shard (padded so every rank has the same count, unless ``pad=False``)."""
        if not self.pad:
            return len(range(self.rank, self.dataset_size, self.world_size))
        return math.ceil(self.dataset_size / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in iteration order (CPU, int64)."""
        size = self.dataset_size
        if self.shuffle:
            order = torch.randperm(size, generator=derive_generator(self.seed, "order", self.epoch))
        else:
            order = torch.arange(size)
        total = math.ceil(size / self.world_size) * self.world_size if self.pad else size
        if total > size:  # repeat from the start (possibly several times for tiny datasets)
            order = order.repeat(math.ceil(total / size))[:total]
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = self.indices().to(self.images.device)
        generator = derive_generator(self.seed, "augment", self.epoch, self.rank) if self.augment else None
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = indices[start : start + self.batch_size]
            images = self.images[batch]
            if generator is not None:
                images = augment_batch(images, generator, self.padding)
            yield images, self.labels[batch]
