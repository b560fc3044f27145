"""MNIST and Fashion-MNIST from their four standard IDX files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from decayprune.data.folders import candidate_dirs, locate
from decayprune.data.idx import IdxFormatError, read_idx
from decayprune.data.splits import DatasetSplits

__all__ = ["IDX_FILES", "FASHION_MNIST_SYSTEM_DIR", "load_mnist", "load_fashion_mnist", "load_idx_dataset"]

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist

_SUBFOLDERS = {
    "mnist": ["mnist", "MNIST/raw"],  # MNIST/raw: torchvision's layout
    "fashion-mnist": ["fashion-mnist", "fashion_mnist", "FashionMNIST/raw"],
}
_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
_CLASS_NAMES = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}
_NUM_CLASSES = 10


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _check(folder: Path) -> str | None:
    missing = [f"{stem}[.gz]" for stem in IDX_FILES.values() if _find_file(folder, stem) is None]
    return f"missing {', '.join(missing)}" if missing else None


def _how_to_get(name: str) -> str:
    manual = (
        "download the four IDX files yourself (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into a folder and pass it with "
        "--data-dir DIR / data_dir=DIR, or set $DECAYPRUNE_DATA=DIR"
    )
    if name == "fashion-mnist":
        return (
            "on Debian/Ubuntu run `apt-get install dataset-fashion-mnist` "
            f"(installs {FASHION_MNIST_SYSTEM_DIR}); otherwise {manual}"
        )
    return manual


def _read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_path = _find_file(folder, IDX_FILES[f"{split}_images"])
    label_path = _find_file(folder, IDX_FILES[f"{split}_labels"])
    assert image_path is not None and label_path is not None  # guaranteed by _check
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxFormatError(
            f"{image_path}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise IdxFormatError(
            f"{label_path}: expected {images.shape[0]} labels (one per image in {image_path.name}), "
            f"got shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= _NUM_CLASSES):
        raise IdxFormatError(
            f"{label_path}: labels must lie in [0, {_NUM_CLASSES}), got [{labels.min()}, {labels.max()}]"
        )
    return images, labels


def load_idx_dataset(name: str, data_dir: str | os.PathLike | None = None) -> DatasetSplits:
    """Load ``"mnist"`` or ``"fashion-mnist"`` as raw splits (pixels scaled to [0, 1], not normalized).

    Search order: ``data_dir`` and its ``<name>`` subfolder, ``$DECAYPRUNE_DATA`` and its
    ``<name>`` subfolder, then (Fashion-MNIST only) ``/usr/share/datasets/fashion-mnist``.

    Raises:
        FileNotFoundError: naming the folders searched, the files expected and how to get them.
        IdxFormatError: when a file is corrupt.

    Example:
        >>> splits = load_idx_dataset("fashion-mnist")  # doctest: +SKIP
    """
    if name not in _SUBFOLDERS:
        raise ValueError(f"unknown IDX dataset {name!r}; allowed: {sorted(_SUBFOLDERS)}")
    defaults = [FASHION_MNIST_SYSTEM_DIR] if name == "fashion-mnist" else []
    folder = locate(
        _TITLES[name],
        candidate_dirs(data_dir, _SUBFOLDERS[name], defaults),
        _check,
        expected="the IDX files "
        + ", ".join(f"{stem}.gz" for stem in IDX_FILES.values())
        + " (uncompressed names also accepted)",
        how_to_get=_how_to_get(name),
    )
    arrays = {split: _read_split(folder, split) for split in ("train", "test")}
    (train_x, train_y), (test_x, test_y) = arrays["train"], arrays["test"]
    if train_x.shape[1:] != test_x.shape[1:]:
        raise IdxFormatError(f"{folder}: train images are {train_x.shape[1:]} but test images are {test_x.shape[1:]}")

    def to_tensor(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).unsqueeze(1).to(torch.float32).div_(255.0)

    return DatasetSplits(
        name=name,
        train_images=to_tensor(train_x),
        train_labels=torch.from_numpy(train_y.astype(np.int64)),
        test_images=to_tensor(test_x),
        test_labels=torch.from_numpy(test_y.astype(np.int64)),
        num_classes=_NUM_CLASSES,
        in_channels=1,
        image_size=(int(train_x.shape[1]), int(train_x.shape[2])),
        augment=False,
        class_names=_CLASS_NAMES[name],
    )


def load_mnist(data_dir: str | os.PathLike | None = None) -> DatasetSplits:
    """Raw MNIST splits; see :func:`load_idx_dataset`."""
    return load_idx_dataset("mnist", data_dir)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> DatasetSplits:
    """Raw Fashion-MNIST splits; see :func:`load_idx_dataset`."""
    return load_idx_dataset("fashion-mnist", data_dir)
