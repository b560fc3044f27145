"""Dataset registry: name -> loader of raw splits, plus :func:`load_dataset`."""

from __future__ import annotations

import os
from collections.abc import Callable

from decayprune.data.cifar import load_cifar10, load_cifar100
from decayprune.data.digits import load_digits
from decayprune.data.imagefolder import load_imagefolder
from decayprune.data.mnist import load_fashion_mnist, load_mnist
from decayprune.data.splits import DatasetSplits, normalize_splits, subset_splits, validate_subset_size
from decayprune.data.synthetic import load_synthetic
from decayprune.data.tokens import TokenSplits, load_text_bytes
from decayprune.registry import DATASETS

__all__ = ["DatasetLoader", "DATASETS", "register_dataset", "list_datasets", "load_dataset", "canonical_name"]

# A loader takes data_dir and returns splits with pixels on their natural scale, not normalized.
DatasetLoader = Callable[["str | os.PathLike | None"], "DatasetSplits | TokenSplits"]

for _name, _loader in {
    "digits": load_digits,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "imagefolder": load_imagefolder,
    "synthetic": load_synthetic,
    "text-bytes": load_text_bytes,
}.items():
    DATASETS.add(_name, _loader)


def canonical_name(name: str) -> str:
    """Lower-case ``name`` and write ``_`` as ``-`` (``"Fashion_MNIST"`` -> ``"fashion-mnist"``).

    Example:
        >>> canonical_name("Fashion_MNIST")
        'fashion-mnist'
    """
    return DATASETS.key(name)


def register_dataset(name: str, loader: DatasetLoader, *, overwrite: bool = False) -> None:
    """Add a dataset; ``loader(data_dir)`` must return raw (unnormalized) :class:`DatasetSplits`.

    Example:
        >>> from decayprune.data.synthetic import synthetic_raw
        >>> register_dataset("tiny-synthetic", lambda d: synthetic_raw(train_size=20, test_size=10), overwrite=True)
        >>> "tiny-synthetic" in list_datasets()
        True
        >>> DATASETS.remove("tiny-synthetic")
    """
    if name in DATASETS and not overwrite:
        raise ValueError(f"dataset {canonical_name(name)!r} is already registered; pass overwrite=True to replace it")
    DATASETS.add(name, loader, overwrite=True)


def list_datasets() -> list[str]:
    """Registered dataset names, sorted.

    Example:
        >>> "digits" in list_datasets()
        True
    """
    return DATASETS.names()


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    train_subset: int | None = None,
    test_subset: int | None = None,
    image_size: tuple[int, int] | None = None,
) -> DatasetSplits | TokenSplits:
    """Load a registered dataset, optionally subset it, and normalize it (images; token data is not normalized).

    The dataset's content never depends on ``seed``: it only picks which images a subset keeps
    (the first ``n`` after a shuffle seeded by ``seed``). ``image_size`` resizes and centre-crops
    the images of ``imagefolder`` (the other datasets have a fixed size and refuse it).
    Normalization uses the per-channel mean and std of the (subset) train split and is applied to both splits.

    Raises:
        ValueError: for an unknown name (listing the allowed names and the closest match).
        FileNotFoundError: when a file-backed dataset cannot be found.

    Example:
        >>> s = load_dataset("digits", train_subset=100)
        >>> s.num_train, s.input_shape, s.num_classes
        (100, (1, 8, 8), 10)
    """
    if not isinstance(name, str):
        raise ValueError(f"dataset name must be a string, got {type(name).__name__}")
    if name not in DATASETS:
        raise ValueError(DATASETS.unknown_message(name))
    validate_subset_size(train_subset, "train_subset")
    validate_subset_size(test_subset, "test_subset")
    if image_size is not None:
        if DATASETS.key(name) != "imagefolder":
            raise ValueError(f"image_size resizes imagefolder images only; dataset {name!r} has a fixed size")
        raw = load_imagefolder(data_dir, image_size=image_size)
    else:
        raw = DATASETS.get(name)(data_dir)
    if isinstance(raw, TokenSplits):
        return raw.subset(train_subset, test_subset, seed=seed)
    return normalize_splits(subset_splits(raw, train_subset, test_subset, seed=seed))
