"""CIFAR loaders on tiny batches pickled in the official layout, and the restricted unpickler."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from decayprune.data import load_cifar_batch, load_dataset


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DECAYPRUNE_DATA", raising=False)


def _batch(n: int, label_key: bytes, num_classes: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"tiny batch",
        label_key: [int(v) for v in rng.integers(0, num_classes, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def _dump(path: Path, obj: object, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=protocol)


def write_cifar10(root: Path, per_batch: int = 4, protocol: int = pickle.DEFAULT_PROTOCOL) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        _dump(folder / f"data_batch_{i}", _batch(per_batch, b"labels", 10, seed=i), protocol)
    _dump(folder / "test_batch", _batch(per_batch, b"labels", 10, seed=99), protocol)
    names = [n.encode() for n in "airplane automobile bird cat deer dog frog horse ship truck".split()]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072}, protocol)
    return folder


def write_cifar100(root: Path, n: int = 6) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, seed in (("train", 1), ("test", 2)):
        batch = _batch(n, b"fine_labels", 100, seed)
        batch[b"coarse_labels"] = [v // 5 for v in batch[b"fine_labels"]]
        _dump(folder / name, batch)
    return folder


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_round_trip(tmp_path: Path, protocol: int) -> None:
    folder = write_cifar10(tmp_path, protocol=protocol)
    splits = load_dataset("cifar10", tmp_path)
    assert splits.train_images.shape == (20, 3, 32, 32) and splits.test_images.shape == (4, 3, 32, 32)
    expected_labels = [v for i in range(1, 6) for v in _batch(4, b"labels", 10, seed=i)[b"labels"]]
    assert splits.train_labels.tolist() == expected_labels
    assert (splits.num_classes, splits.augment, splits.image_size) == (10, True, (32, 32))
    assert splits.class_names[-1] == "truck"
    # the pixel layout is channel-major rows of 1024 values, and normalization is per channel
    raw = torch.from_numpy(_batch(4, b"labels", 10, seed=99)[b"data"]).float().div(255).view(4, 3, 32, 32)
    mean = torch.tensor(splits.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(splits.std, dtype=torch.float32).view(1, 3, 1, 1)
    torch.testing.assert_close(splits.test_images, (raw - mean) / std)
    # the batch folder itself is accepted too
    torch.testing.assert_close(load_dataset("cifar10", folder).train_images, splits.train_images)


def test_cifar100_uses_fine_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar100(tmp_path / "cifar100")
    monkeypatch.setenv("DECAYPRUNE_DATA", str(tmp_path))
    splits = load_dataset("cifar100")
    assert splits.num_classes == 100
    assert splits.train_labels.tolist() == _batch(6, b"fine_labels", 100, 1)[b"fine_labels"]
    assert splits.class_names == ()  # no meta file written


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    batch = _batch(4, b"labels", 10, seed=1)
    batch[b"extra"] = _Exploit(marker)
    _dump(folder / "data_batch_1", batch)
    with pytest.raises(pickle.UnpicklingError, match="refused global '(posix|os|nt).system'") as info:
        load_dataset("cifar10", tmp_path)
    assert "data_batch_1" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("target", [("builtins", "eval"), ("numpy", "load"), ("subprocess", "Popen")])
def test_other_globals_are_refused(tmp_path: Path, target: tuple[str, str]) -> None:
    module, name = target
    # GLOBAL opcode followed by STOP: resolving the global alone must already fail
    path = tmp_path / "evil"
    path.write_bytes(b"c" + module.encode() + b"\n" + name.encode() + b"\n.")
    with pytest.raises(pickle.UnpicklingError, match=f"refused global '{module}.{name}'"):
        load_cifar_batch(path)


def test_truncated_batch_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "batch"
    _dump(path, _batch(2, b"labels", 10, 0))
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises((ValueError, pickle.UnpicklingError), match=re.escape(str(path))):
        load_cifar_batch(path)


def test_wrong_data_shape_is_reported(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    batch = _batch(4, b"labels", 10, seed=1)
    batch[b"data"] = batch[b"data"][:, :100]
    _dump(folder / "data_batch_3", batch)
    with pytest.raises(ValueError, match=r"data_batch_3.*\(N, 3072\)"):
        load_dataset("cifar10", tmp_path)


def test_missing_cifar_lists_folders_and_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_cifar10(tmp_path / "given")
    (folder / "test_batch").unlink()
    monkeypatch.setenv("DECAYPRUNE_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10", tmp_path / "given")
    message = str(info.value)
    for searched in (tmp_path / "given", folder, tmp_path / "env", tmp_path / "env" / "cifar-10-batches-py"):
        assert str(searched) in message
    assert "missing test_batch" in message
    assert "data_batch_1" in message and "cifar-10-python.tar.gz" in message


def test_missing_cifar_without_any_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="DECAYPRUNE_DATA"):
        load_dataset("cifar100")
