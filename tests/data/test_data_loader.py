"""TensorLoader order, sharding, reproducibility, and augment_batch invariants."""

from __future__ import annotations

import pytest
import torch

from decayprune.data import TensorLoader, augment_batch


def _data(n: int = 23) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return images, torch.arange(n)


def _epoch_labels(loader: TensorLoader, epoch: int) -> list[int]:
    loader.set_epoch(epoch)
    return [int(v) for _, labels in loader for v in labels]


def test_no_shuffle_visits_each_index_once_in_order() -> None:
    images, labels = _data()
    loader = TensorLoader(images, labels, batch_size=5, shuffle=False)
    seen = _epoch_labels(loader, 0)
    assert seen == list(range(23))
    assert len(loader) == 5 == len(list(loader))
    for batch_images, batch_labels in loader:  # images stay paired with their labels
        assert torch.equal(batch_images[:, 0, 0, 0], batch_labels.float())


def test_shuffle_is_a_permutation_reproducible_and_epoch_dependent() -> None:
    images, labels = _data()
    a = TensorLoader(images, labels, batch_size=4, shuffle=True, seed=7)
    b = TensorLoader(images, labels, batch_size=4, shuffle=True, seed=7)
    e0, e1 = _epoch_labels(a, 0), _epoch_labels(a, 1)
    assert sorted(e0) == sorted(e1) == list(range(23))
    assert e0 != e1
    assert _epoch_labels(b, 1) == e1 and _epoch_labels(b, 0) == e0  # same (seed, epoch), any call order
    c = TensorLoader(images, labels, batch_size=4, shuffle=True, seed=8)
    assert _epoch_labels(c, 0) != e0


@pytest.mark.parametrize("n,world", [(24, 4), (23, 4), (5, 3), (2, 3)])
def test_rank_shards_cover_everything_with_equal_sizes(n: int, world: int) -> None:
    images, labels = _data(n)
    shards = []
    for rank in range(world):
        loader = TensorLoader(images, labels, batch_size=3, shuffle=True, seed=1, rank=rank, world_size=world)
        shards.append(_epoch_labels(loader, 2))
    sizes = {len(s) for s in shards}
    assert sizes == {-(-n // world)}
    flat = [v for s in shards for v in s]
    assert set(flat) == set(range(n))
    if n % world == 0:
        assert len(flat) == len(set(flat))  # disjoint


def test_drop_last_and_len() -> None:
    images, labels = _data(23)
    loader = TensorLoader(images, labels, batch_size=5, shuffle=True, drop_last=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    assert all(len(b[1]) == 5 for b in batches)


def test_augmented_epochs_are_reproducible() -> None:
    images = torch.randn(16, 3, 8, 8)
    labels = torch.arange(16)

    def make() -> TensorLoader:
        return TensorLoader(images, labels, 8, shuffle=True, augment=True, seed=3, rank=1, world_size=2)

    first, second = make(), make()
    first.set_epoch(4)
    second.set_epoch(4)
    for (xa, ya), (xb, yb) in zip(first, second):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    first.set_epoch(5)
    assert not all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(first, second))


@pytest.mark.parametrize(
    "kwargs",
    [dict(batch_size=0), dict(world_size=0), dict(rank=2, world_size=2), dict(rank=-1), dict(padding=-1)],
)
def test_bad_arguments_are_refused(kwargs: dict) -> None:
    images, labels = _data(4)
    args = dict(batch_size=2, shuffle=False) | kwargs
    with pytest.raises(ValueError):
        TensorLoader(images, labels, **args)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same first dimension"):
        TensorLoader(torch.zeros(3, 1, 2, 2), torch.zeros(4, dtype=torch.long), 2, shuffle=False)


def test_set_epoch_refuses_negative() -> None:
    images, labels = _data(4)
    with pytest.raises(ValueError, match="epoch"):
        TensorLoader(images, labels, 2, shuffle=False).set_epoch(-1)


def test_augment_flip_only_gives_image_or_mirror() -> None:
    images = torch.randn(64, 3, 5, 7)
    out = augment_batch(images, torch.Generator().manual_seed(0), padding=0)
    assert out.shape == images.shape
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert bool(same.any()) and bool(mirrored.any())


def test_augment_crop_is_a_shifted_window_of_the_padded_image() -> None:
    padding = 2
    images = torch.rand(32, 2, 6, 6) + 1.0  # strictly positive, so padding zeros are recognisable
    out = augment_batch(images, torch.Generator().manual_seed(1), padding=padding)
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    for i in range(images.shape[0]):
        windows = [
            candidate[:, dy : dy + 6, dx : dx + 6]
            for candidate in (padded[i], padded[i].flip(-1))
            for dy in range(2 * padding + 1)
            for dx in range(2 * padding + 1)
        ]
        assert any(torch.equal(out[i], w) for w in windows)
    assert bool((out == 0).any())  # some crops reach into the zero padding


def test_augment_is_deterministic_per_generator_state() -> None:
    images = torch.randn(10, 3, 8, 8)
    a = augment_batch(images, torch.Generator().manual_seed(5))
    b = augment_batch(images, torch.Generator().manual_seed(5))
    c = augment_batch(images, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="N, C, H, W"):
        augment_batch(torch.zeros(3, 4, 4), torch.Generator())
    with pytest.raises(ValueError, match="padding"):
        augment_batch(torch.zeros(1, 1, 4, 4), torch.Generator(), padding=-2)


def test_unpadded_shards_are_disjoint_and_cover_every_sample_once() -> None:
    x, y = torch.rand(10, 1, 2, 2), torch.arange(10)
    shards = [TensorLoader(x, y, 3, shuffle=True, seed=4, pad=False, rank=r, world_size=3) for r in range(3)]
    seen = [int(v) for loader in shards for _, labels in loader for v in labels]
    assert sorted(seen) == list(range(10))
    assert [loader.num_samples for loader in shards] == [4, 3, 3]
    assert [len(loader) for loader in shards] == [2, 1, 1]
