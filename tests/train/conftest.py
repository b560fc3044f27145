"""Shared helpers of the training-engine tests: a tiny seeded loader and small models."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn


class ToyLoader:
    """Batches over in-memory tensors; the order depends only on (seed, epoch)."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.x, self.y = x[rank::world_size], y[rank::world_size]
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0
        self.epochs_seen: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.epochs_seen.append(epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.shuffle:
            order = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(self.seed * 1009 + self.epoch))
        else:
            order = torch.arange(len(self.y))
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.x[index], self.y[index]


def blobs(n: int, features: int = 6, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable toy problem: Gaussian blobs around random class centres."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, features, generator=g) * 2
    labels = torch.randint(0, classes, (n,), generator=g)
    return centres[labels] + torch.randn(n, features, generator=g), labels


def toy_model(seed: int = 0, features: int = 6, classes: int = 3) -> nn.Module:
    """A small MLP with BatchNorm (buffers) and Dropout (consumes the torch RNG)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(features, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, classes)
    )


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster and avoids oversubscribing shared CPUs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def toy_loaders() -> Callable[..., tuple[ToyLoader, ToyLoader]]:
    """Factory: ``toy_loaders(n_train=96, batch_size=16)`` -> (train, test) loaders."""

    def make(n_train: int = 96, n_test: int = 48, batch_size: int = 16, seed: int = 0) -> tuple[ToyLoader, ToyLoader]:
        x, y = blobs(n_train + n_test, seed=seed)
        train = ToyLoader(x[:n_train], y[:n_train], batch_size, shuffle=True, seed=seed)
        test = ToyLoader(x[n_train:], y[n_train:], 32, shuffle=False)
        return train, test

    return make


@pytest.fixture
def loader_cls() -> type[ToyLoader]:
    """The :class:`ToyLoader` class, for tests that build loaders over their own tensors."""
    return ToyLoader


@pytest.fixture
def make_toy_model() -> Callable[..., nn.Module]:
    """Factory: ``make_toy_model(seed)`` -> small MLP with BatchNorm and Dropout."""
    return toy_model
