"""IDX reader/writer and the MNIST / Fashion-MNIST loaders, on tiny files written in the real format."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

import decayprune.data.mnist as mnist_module
from decayprune.data import IdxFormatError, load_dataset, read_idx, write_idx
from decayprune.data.mnist import FASHION_MNIST_SYSTEM_DIR, IDX_FILES


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DECAYPRUNE_DATA", raising=False)
    monkeypatch.setattr(mnist_module, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "no-system-dir"))


def write_mnist_like(folder: Path, n_train: int = 20, n_test: int = 10, *, gz: bool = True, seed: int = 0) -> dict:
    """Write the four IDX files of a tiny MNIST-like dataset; return the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    for key, array in arrays.items():
        write_idx(folder / (IDX_FILES[key] + (".gz" if gz else "")), array)
    return arrays


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path: Path, dtype: type, suffix: str) -> None:
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temp file


def test_write_idx_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


def test_corrupt_magic_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx1-ubyte"
    write_idx(path, np.zeros(4, dtype=np.uint8))
    raw = bytearray(path.read_bytes())
    raw[0] = 0x42
    path.write_bytes(bytes(raw))
    with pytest.raises(IdxFormatError, match="magic number") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "short-idx3-ubyte.gz"
    write_idx(path, np.zeros((3, 28, 28), dtype=np.uint8))
    payload = gzip.decompress(path.read_bytes())[:-10]
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(IdxFormatError, match="truncated or corrupt"):
        read_idx(path)


def test_corrupt_gzip_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(IdxFormatError, match="gzip"):
        read_idx(path)


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_data_dir(tmp_path: Path, gz: bool) -> None:
    arrays = write_mnist_like(tmp_path, gz=gz)
    splits = load_dataset("mnist", tmp_path)
    assert splits.train_images.shape == (20, 1, 28, 28) and splits.test_images.shape == (10, 1, 28, 28)
    assert splits.train_labels.dtype == torch.int64
    assert splits.train_labels.tolist() == arrays["train_labels"].tolist()
    assert splits.test_labels.tolist() == arrays["test_labels"].tolist()
    assert (splits.num_classes, splits.in_channels, splits.image_size, splits.augment) == (10, 1, (28, 28), False)
    # normalized with train statistics: pixel values map back through mean/std
    raw = torch.from_numpy(arrays["test_images"]).float().div(255).unsqueeze(1)
    expected = (raw - splits.mean[0]) / splits.std[0]
    torch.testing.assert_close(splits.test_images, expected)
    assert abs(float(splits.train_images.mean())) < 1e-4
    assert abs(float(splits.train_images.std(unbiased=False)) - 1.0) < 1e-3


def test_load_fashion_mnist_from_named_subfolder_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist_like(tmp_path / "fashion-mnist", seed=3)
    by_arg = load_dataset("fashion-mnist", tmp_path)
    monkeypatch.setenv("DECAYPRUNE_DATA", str(tmp_path))
    by_env = load_dataset("Fashion_MNIST")
    assert by_arg.name == by_env.name == "fashion-mnist"
    torch.testing.assert_close(by_arg.train_images, by_env.train_images)
    assert by_arg.class_names[0] == "T-shirt/top"


def test_data_dir_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist_like(tmp_path / "a", n_train=20)
    write_mnist_like(tmp_path / "b", n_train=30)
    monkeypatch.setenv("DECAYPRUNE_DATA", str(tmp_path / "b"))
    assert load_dataset("mnist", tmp_path / "a").num_train == 20
    assert load_dataset("mnist").num_train == 30


def test_missing_files_error_names_folders_and_remedy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    partial = tmp_path / "partial"
    write_mnist_like(partial)
    (partial / (IDX_FILES["test_labels"] + ".gz")).unlink()
    env_dir = tmp_path / "env"
    monkeypatch.setenv("DECAYPRUNE_DATA", str(env_dir))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("fashion-mnist", partial)
    message = str(info.value)
    system_dir = mnist_module.FASHION_MNIST_SYSTEM_DIR
    for folder in (partial, partial / "fashion-mnist", env_dir, env_dir / "fashion-mnist", system_dir):
        assert str(folder) in message
    assert "missing t10k-labels-idx1-ubyte" in message
    assert "train-images-idx3-ubyte.gz" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--data-dir" in message


def test_mismatched_label_count_is_reported(tmp_path: Path) -> None:
    write_mnist_like(tmp_path)
    write_idx(tmp_path / (IDX_FILES["train_labels"] + ".gz"), np.zeros(7, dtype=np.uint8))
    with pytest.raises(IdxFormatError, match="expected 20 labels"):
        load_dataset("mnist", tmp_path)


@pytest.mark.skipif(not Path(FASHION_MNIST_SYSTEM_DIR).is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_system_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnist_module, "FASHION_MNIST_SYSTEM_DIR", FASHION_MNIST_SYSTEM_DIR)
    splits = load_dataset("fashion-mnist", train_subset=1000, test_subset=500)
    assert splits.input_shape == (1, 28, 28)
    assert (splits.num_train, splits.num_test) == (1000, 500)
    assert sorted(splits.train_labels.unique().tolist()) == list(range(10))
