"""Registry, digits split, subsets, normalization and the synthetic dataset."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from decayprune.data import DatasetSplits, list_datasets, load_dataset, make_synthetic, subset_splits
from decayprune.data.digits import stratified_split


def test_list_datasets_names_every_builtin() -> None:
    builtins = {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder", "synthetic"}
    assert set(list_datasets()) >= builtins


def test_unknown_name_lists_allowed_and_suggests() -> None:
    with pytest.raises(ValueError) as info:
        load_dataset("cifar-10")
    message = str(info.value)
    assert "cifar10" in message and "digits" in message and "did you mean 'cifar10'" in message


def test_digits_split_is_deterministic_stratified_and_complete() -> None:
    a, b = load_dataset("digits"), load_dataset("digits", seed=123)
    assert (a.num_train, a.num_test) == (1438, 359)
    assert torch.equal(a.test_images, b.test_images) and torch.equal(a.train_labels, b.train_labels)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10 and not a.augment
    train_counts = torch.bincount(a.train_labels, minlength=10).float()
    test_counts = torch.bincount(a.test_labels, minlength=10).float()
    fraction = test_counts / (train_counts + test_counts)
    assert bool(((fraction - 0.2).abs() < 0.02).all())
    # the two splits hold different images that together are the whole sklearn set
    from sklearn.datasets import load_digits

    total = torch.as_tensor(load_digits().images, dtype=torch.float32)
    raw_train = a.train_images[:, 0] * a.std[0] + a.mean[0]
    raw_test = a.test_images[:, 0] * a.std[0] + a.mean[0]
    together = (torch.cat([raw_train, raw_test]) * 16).round().long()
    rows = lambda t: Counter(tuple(r) for r in t.flatten(1).tolist())  # noqa: E731
    assert rows(together) == rows(total.long())


def test_stratified_split_indices_are_disjoint_and_cover() -> None:
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 3)
    train, test = stratified_split(labels, 0.4, seed=0)
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(18))
    assert torch.bincount(labels[test]).tolist() == [4, 2, 1]


def test_subsets_are_seeded_and_normalized() -> None:
    a = load_dataset("digits", train_subset=200, test_subset=50, seed=1)
    b = load_dataset("digits", train_subset=200, test_subset=50, seed=1)
    c = load_dataset("digits", train_subset=200, test_subset=50, seed=2)
    assert (a.num_train, a.num_test) == (200, 50)
    assert torch.equal(a.train_images, b.train_images) and not torch.equal(a.train_labels, c.train_labels)
    assert abs(float(a.train_images.mean())) < 1e-4
    assert abs(float(a.train_images.std(unbiased=False)) - 1) < 1e-3


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_subset_sizes_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="train_subset"):
        load_dataset("synthetic", train_subset=bad)  # type: ignore[arg-type]


def test_oversized_subset_keeps_everything_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="exceeds"):
        splits = load_dataset("synthetic", train_subset=10_000)
    assert splits.num_train == 512


def test_synthetic_defaults_and_determinism() -> None:
    a = load_dataset("synthetic")
    assert a.input_shape == (3, 32, 32) and (a.num_train, a.num_test, a.num_classes) == (512, 256, 10)
    b = make_synthetic()
    torch.testing.assert_close(a.train_images, b.train_images)
    other = make_synthetic(seed=1)
    assert not torch.equal(other.train_images, b.train_images)
    assert torch.bincount(a.train_labels).tolist() == [52] * 2 + [51] * 8


def test_synthetic_is_learnable_by_nearest_class_mean() -> None:
    splits = make_synthetic(num_classes=5, image_size=(16, 16), in_channels=2, train_size=200, test_size=100)
    assert splits.input_shape == (2, 16, 16)
    centroids = torch.stack([splits.train_images[splits.train_labels == c].mean(0) for c in range(5)])
    distances = torch.cdist(splits.test_images.flatten(1), centroids.flatten(1))
    accuracy = float((distances.argmin(1) == splits.test_labels).float().mean())
    assert accuracy > 0.5  # chance is 0.2


@pytest.mark.parametrize(
    "kwargs", [dict(num_classes=1), dict(train_size=0), dict(image_size=(8,)), dict(in_channels=-1)]
)
def test_synthetic_refuses_bad_shapes(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        make_synthetic(**kwargs)


def test_dataset_splits_validates_shapes() -> None:
    good = dict(
        name="t",
        train_images=torch.zeros(4, 1, 2, 2),
        train_labels=torch.zeros(4, dtype=torch.long),
        test_images=torch.zeros(2, 1, 2, 2),
        test_labels=torch.zeros(2, dtype=torch.long),
        num_classes=2,
        in_channels=1,
        image_size=(2, 2),
        augment=False,
    )
    DatasetSplits(**good)
    with pytest.raises(ValueError, match="test_images"):
        DatasetSplits(**(good | dict(test_images=torch.zeros(2, 3, 2, 2))))
    with pytest.raises(ValueError, match="labels must lie"):
        DatasetSplits(**(good | dict(train_labels=torch.tensor([0, 1, 2, 0]))))
    with pytest.raises(ValueError, match="int64"):
        DatasetSplits(**(good | dict(train_labels=torch.zeros(4, dtype=torch.int32))))


def test_subset_splits_keeps_pairs_together() -> None:
    n = 30
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    splits = DatasetSplits("t", images, torch.arange(n) % 3, images[:6], torch.arange(6) % 3, 3, 1, (1, 1), False)
    small = subset_splits(splits, train_subset=10, seed=4)
    assert small.num_train == 10 and small.num_test == 6
    assert torch.equal(small.train_images.flatten().long() % 3, small.train_labels)
