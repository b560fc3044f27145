"""The imagefolder dataset on a few PNGs written with matplotlib."""

from __future__ import annotations

import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from decayprune.data import load_dataset  # noqa: E402
from decayprune.data.imagefolder import read_image  # noqa: E402


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DECAYPRUNE_DATA", raising=False)


def _write(root: Path, split: str, cls: str, index: int, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(f"{split}/{cls}/{index}".encode()))
    image = rng.random((*size, 3))
    folder = root / split / cls
    folder.mkdir(parents=True, exist_ok=True)
    plt.imsave(folder / f"{index}.png", image)
    return image


def _make(root: Path, test_name: str = "test", size: tuple[int, int] = (32, 32)) -> None:
    for cls in ("zebra", "ant", "moth"):
        for i in range(3):
            _write(root, "train", cls, i, size)
        _write(root, test_name, cls, 0, size)


def test_loads_classes_sorted_and_pixels(tmp_path: Path) -> None:
    _make(tmp_path)
    splits = load_dataset("imagefolder", tmp_path)
    assert splits.class_names == ("ant", "moth", "zebra")
    assert splits.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert splits.test_labels.tolist() == [0, 1, 2]
    assert splits.input_shape == (3, 32, 32) and splits.augment
    # pixel values survive the PNG round trip (8-bit quantised) and normalization
    expected = torch.from_numpy(read_image(tmp_path / "test" / "moth" / "0.png"))
    mean = torch.tensor(splits.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(splits.std, dtype=torch.float32).view(3, 1, 1)
    torch.testing.assert_close(splits.test_images[1] * std + mean, expected, atol=1e-5, rtol=0)
    original = _write(tmp_path / "again", "test", "moth", 0)
    assert np.abs(expected.numpy().transpose(1, 2, 0) - original).max() <= 1 / 255 + 1e-6


def test_val_folder_and_small_images(tmp_path: Path) -> None:
    _make(tmp_path, test_name="val", size=(8, 12))
    splits = load_dataset("imagefolder", tmp_path)
    assert splits.input_shape == (3, 8, 12) and not splits.augment
    assert splits.num_test == 3


def test_greyscale_gives_one_channel(tmp_path: Path) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            pixels = np.full((6, 6), 200 if cls == "a" else 10, dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / split / cls / "x.png")
    splits = load_dataset("imagefolder", tmp_path)
    assert splits.input_shape == (1, 6, 6)
    raw = splits.train_images * splits.std[0] + splits.mean[0]
    torch.testing.assert_close(raw[:, 0, 0, 0], torch.tensor([200 / 255, 10 / 255]), atol=1e-5, rtol=0)


def test_mixed_sizes_are_refused(tmp_path: Path) -> None:
    _make(tmp_path)
    _write(tmp_path, "train", "ant", 9, size=(16, 16))
    with pytest.raises(ValueError, match="16x16.*32x32"):
        load_dataset("imagefolder", tmp_path)


def test_test_class_unknown_to_train_is_refused(tmp_path: Path) -> None:
    _make(tmp_path)
    _write(tmp_path, "test", "beetle", 0)
    with pytest.raises(ValueError, match="beetle"):
        load_dataset("imagefolder", tmp_path)


def test_empty_class_is_refused(tmp_path: Path) -> None:
    _make(tmp_path)
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        load_dataset("imagefolder", tmp_path)


def test_missing_layout_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="no test/ or val/ subfolder") as info:
        load_dataset("imagefolder", tmp_path)
    assert str(tmp_path) in str(info.value)
