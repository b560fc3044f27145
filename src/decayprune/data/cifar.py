"""CIFAR-10 / CIFAR-100 from the standard python-pickle batches, read with a restricted unpickler.

The batches are pickles by format. :class:`RestrictedUnpickler` resolves only the few globals that
numpy arrays need, so a tampered file cannot run code: any other global is refused.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from decayprune.data.folders import candidate_dirs, locate
from decayprune.data.splits import DatasetSplits

__all__ = ["ALLOWED_GLOBALS", "RestrictedUnpickler", "load_cifar_batch", "load_cifar10", "load_cifar100", "load_cifar"]

# (module, name) pairs a CIFAR batch may reference. numpy 1.x and 2.x spell the modules differently;
# _frombuffer appears with pickle protocol 5, _codecs.encode with bytes pickled at protocol <= 2.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("builtins", "bytearray"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` and refuses persistent ids.

    Example:
        >>> import io, pickle, numpy as np
        >>> blob = pickle.dumps({b"data": np.arange(3, dtype=np.uint8)})
        >>> RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()[b"data"].tolist()
        [0, 1, 2]
    """

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - documented on the class
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refused global '{module}.{name}': CIFAR batches may only reference numpy array "
                f"reconstruction ({', '.join(sorted(f'{m}.{n}' for m, n in ALLOWED_GLOBALS))})"
            )
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise pickle.UnpicklingError("refused persistent id: CIFAR batches do not use them")


def load_cifar_batch(path: str | os.PathLike) -> dict[str, Any]:
    """Read one CIFAR batch file safely; keys are returned as ``str``.

    Raises:
        pickle.UnpicklingError: when the file references a global outside :data:`ALLOWED_GLOBALS`
            (the message names it) or is not a pickle.
        ValueError: when the file is truncated or does not hold a dict.

    Example:
        >>> batch = load_cifar_batch("cifar-10-batches-py/test_batch")  # doctest: +SKIP
    """
    path = Path(path)
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        obj = RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(f"{path}: {err}") from err
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise ValueError(f"{path}: not a valid CIFAR pickle batch ({type(err).__name__}: {err})") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


@dataclass(frozen=True)
class _Variant:
    title: str
    folder: str  # the folder name inside the official archive
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int
    url: str
    meta_file: str
    names_key: str


_VARIANTS = {
    "cifar10": _Variant(
        "CIFAR-10",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "labels",
        10,
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "batches.meta",
        "label_names",
    ),
    "cifar100": _Variant(
        "CIFAR-100",
        "cifar-100-python",
        ("train",),
        ("test",),
        "fine_labels",
        100,
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "meta",
        "fine_label_names",
    ),
}


def _read_files(folder: Path, files: tuple[str, ...], variant: _Variant) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for file in files:
        path = folder / file
        batch = load_cifar_batch(path)
        if "data" not in batch or variant.label_key not in batch:
            raise ValueError(f"{path}: expected keys 'data' and {variant.label_key!r}, found {sorted(batch)}")
        data = np.asarray(batch["data"])
        label = np.asarray(batch[variant.label_key])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
        if label.ndim != 1 or label.shape[0] != data.shape[0] or not np.issubdtype(label.dtype, np.integer):
            raise ValueError(
                f"{path}: {variant.label_key!r} must hold {data.shape[0]} integer labels, "
                f"got {label.dtype} {label.shape}"
            )
        if label.size and (label.min() < 0 or label.max() >= variant.num_classes):
            raise ValueError(
                f"{path}: labels must lie in [0, {variant.num_classes}), got [{label.min()}, {label.max()}]"
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(label.astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _class_names(folder: Path, variant: _Variant) -> tuple[str, ...]:
    """Class names from the optional meta file; empty when it is absent or malformed."""
    path = folder / variant.meta_file
    if not path.is_file():
        return ()
    names = load_cifar_batch(path).get(variant.names_key)
    if not isinstance(names, list) or len(names) != variant.num_classes:
        return ()
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def load_cifar(name: str, data_dir: str | os.PathLike | None = None) -> DatasetSplits:
    """Load ``"cifar10"`` or ``"cifar100"`` as raw splits (pixels scaled to [0, 1], not normalized).

    ``data_dir`` (or an entry of ``$DECAYPRUNE_DATA``) may be the batch folder itself or a parent
    holding ``cifar-10-batches-py`` / ``cifar-100-python`` (directly or under a ``<name>`` folder).

    Raises:
        FileNotFoundError: naming the folders searched and the layout expected.

    Example:
        >>> splits = load_cifar("cifar10", "~/data")  # doctest: +SKIP
    """
    if name not in _VARIANTS:
        raise ValueError(f"unknown CIFAR variant {name!r}; allowed: {sorted(_VARIANTS)}")
    variant = _VARIANTS[name]
    needed = variant.train_files + variant.test_files

    def check(folder: Path) -> str | None:
        missing = [f for f in needed if not (folder / f).is_file()]
        return f"missing {', '.join(missing)}" if missing else None

    folder = locate(
        variant.title,
        candidate_dirs(data_dir, [variant.folder, name, f"{name}/{variant.folder}"]),
        check,
        expected=f"a folder {variant.folder}/ holding {', '.join(needed)} (the python version of the dataset)",
        how_to_get=(
            f"download and extract {variant.url} on a machine with internet, then pass the extracted "
            f"folder (or its parent) with --data-dir DIR / data_dir=DIR, or set $DECAYPRUNE_DATA=DIR"
        ),
    )
    train_x, train_y = _read_files(folder, variant.train_files, variant)
    test_x, test_y = _read_files(folder, variant.test_files, variant)
    return DatasetSplits(
        name=name,
        train_images=torch.from_numpy(train_x).to(torch.float32).div_(255.0),
        train_labels=torch.from_numpy(train_y),
        test_images=torch.from_numpy(test_x).to(torch.float32).div_(255.0),
        test_labels=torch.from_numpy(test_y),
        num_classes=variant.num_classes,
        in_channels=3,
        image_size=(32, 32),
        augment=True,
        class_names=_class_names(folder, variant),
    )


def load_cifar10(data_dir: str | os.PathLike | None = None) -> DatasetSplits:
    """Raw CIFAR-10 splits; see :func:`load_cifar`."""
    return load_cifar("cifar10", data_dir)


def load_cifar100(data_dir: str | os.PathLike | None = None) -> DatasetSplits:
    """Raw CIFAR-100 splits; see :func:`load_cifar`."""
    return load_cifar("cifar100", data_dir)
