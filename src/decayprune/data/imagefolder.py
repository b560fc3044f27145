"""Images in class folders: ``root/train/<class>/*`` and ``root/test/<class>/*`` (or ``root/val``).

Classes are the sorted names of the folders under ``train/``; ``test/`` may hold a subset of them.
With ``image_size=(H, W)`` every image is resized (bilinear, antialiased) to cover ``H x W`` and
centre-cropped to it; without, images are not resized and must all share one size. Greyscale
files give one channel; if any file is in colour, every image is read as RGB (alpha is dropped).
Crop+flip augmentation is switched on for colour images at least 32 pixels on their short side
(natural photographs); off otherwise.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from decayprune.data.folders import candidate_dirs, locate
from decayprune.data.splits import DatasetSplits

__all__ = ["IMAGE_EXTENSIONS", "fit_image", "load_imagefolder", "read_image"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_GREY_MODES = {"1", "L", "LA"}
_WIDE_GREY_MODES = {"I", "I;16", "I;16L", "I;16B", "F"}
_AUGMENT_MIN_SIDE = 32


def read_image(path: str | os.PathLike, *, rgb: bool = False) -> np.ndarray:
    """Read one image as float32 ``(C, H, W)`` in [0, 1]: C = 1 for greyscale files, else 3.

    ``rgb=True`` forces three channels. Uses Pillow (a matplotlib dependency); falls back to
    ``matplotlib.image.imread`` (PNG only) when Pillow is missing.

    Example:
        >>> import tempfile, matplotlib.pyplot as plt, numpy as np
        >>> p = Path(tempfile.mkdtemp()) / "a.png"
        >>> plt.imsave(p, np.zeros((4, 5, 3)))
        >>> read_image(p).shape
        (3, 4, 5)
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with matplotlib
        import matplotlib.image

        array = np.asarray(matplotlib.image.imread(os.fspath(path)), dtype=np.float32)
        if array.ndim == 3:
            array = array[..., :3]
    else:
        with Image.open(path) as image:
            if image.mode in _GREY_MODES and not rgb:
                array = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
            elif image.mode in _WIDE_GREY_MODES and not rgb:
                scale = 1.0 if image.mode == "F" else 65535.0
                array = np.asarray(image, dtype=np.float32) / scale
            else:
                array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[None] if not rgb else np.repeat(array[None], 3, axis=0)
    else:
        array = np.ascontiguousarray(array.transpose(2, 0, 1))
    return array


def _is_grey(path: Path) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with matplotlib
        return read_image(path).shape[0] == 1
    with Image.open(path) as image:  # lazy: reads the header only
        return image.mode in _GREY_MODES or image.mode in _WIDE_GREY_MODES


def _class_files(split_dir: Path) -> dict[str, list[Path]]:
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    return {
        c: sorted(p for p in (split_dir / c).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        for c in classes
    }


def _check(folder: Path) -> str | None:
    if not (folder / "train").is_dir():
        return "no train/ subfolder"
    if not (folder / "test").is_dir() and not (folder / "val").is_dir():
        return "no test/ or val/ subfolder"
    return None


def fit_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a ``(C, h, w)`` image (bilinear, antialiased) to cover ``size`` and centre-crop it to ``size``.

    Example:
        >>> fit_image(torch.rand(3, 40, 80), (32, 32)).shape
        torch.Size([3, 32, 32])
    """
    height, width = size
    h, w = image.shape[1:]
    if (h, w) != (height, width):
        scale = max(height / h, width / w)
        new = (max(height, math.ceil(h * scale - 1e-6)), max(width, math.ceil(w * scale - 1e-6)))
        image = F.interpolate(image[None], size=new, mode="bilinear", antialias=True, align_corners=False)[0]
        top, left = (new[0] - height) // 2, (new[1] - width) // 2
        image = image[:, top : top + height, left : left + width]
    return image


def _read_split(files: list[tuple[Path, int]], size: tuple[int, int], rgb: bool, resize: bool = False) -> torch.Tensor:
    channels = 3 if rgb else 1
    out = torch.empty(len(files), channels, *size, dtype=torch.float32)
    for i, (path, _) in enumerate(files):
        array = read_image(path, rgb=rgb)
        if resize:
            out[i] = fit_image(torch.from_numpy(array), size)
            continue
        if array.shape[1:] != size:
            raise ValueError(
                f"{path}: image is {array.shape[1]}x{array.shape[2]} (HxW) but the first image is "
                f"{size[0]}x{size[1]}; set data.image_size (e.g. [224, 224]) to resize and centre-crop every image"
            )
        out[i] = torch.from_numpy(array)
    return out


def load_imagefolder(
    data_dir: str | os.PathLike | None = None, image_size: tuple[int, int] | None = None
) -> DatasetSplits:
    """Load ``data_dir/train/<class>/*`` and ``data_dir/test/<class>/*`` (or ``val/``) as raw splits.

    ``image_size``: resize and centre-crop every image to ``(H, W)`` (see :func:`fit_image`).

    Also tried: ``data_dir/imagefolder``, ``$DECAYPRUNE_DATA`` and ``$DECAYPRUNE_DATA/imagefolder``.

    Raises:
        FileNotFoundError: when no folder has the layout.
        ValueError: on an empty class, a test class unknown to train, or images of differing size
            (without ``image_size``).

    Example:
        >>> splits = load_imagefolder("my_images")  # doctest: +SKIP
    """
    root = locate(
        "Image folder dataset",
        candidate_dirs(data_dir, ["imagefolder"]),
        _check,
        expected="train/<class>/<images> and test/<class>/<images> (or val/<class>/<images>); "
        f"extensions {', '.join(sorted(IMAGE_EXTENSIONS))}",
        how_to_get="arrange your images in that layout and pass the folder with --data-dir DIR / data_dir=DIR",
    )
    test_dir = root / "test" if (root / "test").is_dir() else root / "val"
    train_classes = _class_files(root / "train")
    test_classes = _class_files(test_dir)
    if not train_classes:
        raise ValueError(f"{root / 'train'}: no class folders found")
    for split_dir, classes in ((root / "train", train_classes), (test_dir, test_classes)):
        empty = [c for c, files in classes.items() if not files]
        if empty:
            raise ValueError(
                f"{split_dir}: class folder(s) {empty} hold no images with extensions {sorted(IMAGE_EXTENSIONS)}"
            )
    unknown = sorted(set(test_classes) - set(train_classes))
    if unknown:
        raise ValueError(f"{test_dir}: classes {unknown} do not appear under {root / 'train'}")
    if not test_classes:
        raise ValueError(f"{test_dir}: no class folders found")
    index = {c: i for i, c in enumerate(train_classes)}
    train_files = [(p, index[c]) for c, files in train_classes.items() for p in files]
    test_files = [(p, index[c]) for c, files in test_classes.items() for p in files]

    first = read_image(train_files[0][0])
    rgb = not all(_is_grey(p) for p, _ in train_files + test_files)
    resize = image_size is not None
    size = (int(image_size[0]), int(image_size[1])) if image_size else (int(first.shape[1]), int(first.shape[2]))
    train_x = _read_split(train_files, size, rgb, resize)
    test_x = _read_split(test_files, size, rgb, resize)
    return DatasetSplits(
        name="imagefolder",
        train_images=train_x,
        train_labels=torch.tensor([label for _, label in train_files], dtype=torch.int64),
        test_images=test_x,
        test_labels=torch.tensor([label for _, label in test_files], dtype=torch.int64),
        num_classes=len(train_classes),
        in_channels=train_x.shape[1],
        image_size=size,
        augment=rgb and min(size) >= _AUGMENT_MIN_SIDE,
        class_names=tuple(train_classes),
    )
