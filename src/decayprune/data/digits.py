"""scikit-learn's 8x8 handwritten digits (ships inside the wheel): the embedded default dataset."""

from __future__ import annotations

import os

import torch

from decayprune.data.seeding import derive_generator
from decayprune.data.splits import DatasetSplits

__all__ = ["DIGITS_SPLIT_SEED", "DIGITS_TEST_FRACTION", "stratified_split", "load_digits"]

DIGITS_SPLIT_SEED = 0  # fixed so every run, whatever its seed, is scored on the same test images
DIGITS_TEST_FRACTION = 0.2


def stratified_split(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices so that each class sends ``round(test_fraction * count)`` samples to test.

    Returns sorted ``(train_indices, test_indices)``; disjoint, together covering every index.

    Example:
        >>> tr, te = stratified_split(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]), 0.5, seed=0)
        >>> len(tr), len(te), sorted(set(tr.tolist()) | set(te.tolist())) == list(range(10))
        (5, 5, True)
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    generator = derive_generator(seed, "stratified-split")
    train_parts, test_parts = [], []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        n_test = int(round(test_fraction * members.numel()))
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    return torch.cat(train_parts).sort().values, torch.cat(test_parts).sort().values


def load_digits(data_dir: str | os.PathLike | None = None) -> DatasetSplits:
    """Raw digits splits: 1,797 grey 8x8 images scaled from 0..16 to [0, 1], 80/20 stratified.

    ``data_dir`` is ignored (the data ships with scikit-learn). The split is fixed by
    :data:`DIGITS_SPLIT_SEED`.

    Example:
        >>> s = load_digits()
        >>> s.input_shape, s.num_train + s.num_test
        ((1, 8, 8), 1797)
    """
    from sklearn.datasets import load_digits as sklearn_load_digits  # deferred: sklearn import is slow

    bunch = sklearn_load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    train_idx, test_idx = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    return DatasetSplits(
        name="digits",
        train_images=images[train_idx],
        train_labels=labels[train_idx],
        test_images=images[test_idx],
        test_labels=labels[test_idx],
        num_classes=10,
        in_channels=1,
        image_size=(8, 8),
        augment=False,
        class_names=tuple(str(d) for d in range(10)),
    )
