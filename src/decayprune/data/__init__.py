"""Datasets held as tensors in memory, and a loader that batches them without per-sample Python.

Example:
    >>> from decayprune.data import load_dataset, TensorLoader
    >>> splits = load_dataset("digits")
    >>> loader = TensorLoader(splits.train_images, splits.train_labels, 64, shuffle=True, augment=splits.augment)
    >>> loader.set_epoch(0)
    >>> images, labels = next(iter(loader))
    >>> tuple(images.shape), labels.dtype
    ((64, 1, 8, 8), torch.int64)
"""

from __future__ import annotations

from decayprune.data.cifar import RestrictedUnpickler, load_cifar_batch
from decayprune.data.idx import IdxFormatError, read_idx, write_idx
from decayprune.data.loader import TensorLoader, augment_batch
from decayprune.data.registry import list_datasets, load_dataset, register_dataset
from decayprune.data.splits import DatasetSplits, normalize_splits, subset_splits
from decayprune.data.synthetic import make_synthetic
from decayprune.data.tokens import TokenSplits, load_text_bytes

__all__ = [
    "DatasetSplits",
    "IdxFormatError",
    "RestrictedUnpickler",
    "TensorLoader",
    "TokenSplits",
    "augment_batch",
    "list_datasets",
    "load_cifar_batch",
    "load_dataset",
    "load_text_bytes",
    "make_synthetic",
    "normalize_splits",
    "read_idx",
    "register_dataset",
    "subset_splits",
    "write_idx",
]
