"""Sparsity schedules and magnitude prune-retrain: the cubic schedule hits its targets through the engine."""

from __future__ import annotations

import pytest
import torch
from sparse_testing import small_convnet, train_steps

from decayprune.config import DecaySettings
from decayprune.decay import DecayEngine
from decayprune.sparse import ElementMasks, MagnitudePruning, sparsity_at


def test_cubic_schedule_matches_zhu_and_gupta() -> None:
    for t in range(0, 21):
        expected = 0.9 + (0.1 - 0.9) * (1 - min(t, 20) / 20) ** 3
        assert sparsity_at(t, target=0.9, begin=0, end=20, initial=0.1) == pytest.approx(expected, abs=1e-12)
    values = [sparsity_at(t, target=0.9, begin=5, end=25) for t in range(30)]
    assert values[:6] == [0.0] * 6 and values[25:] == [0.9] * 5
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[10] - values[5] > values[25] - values[20]  # fast early, slow late


def test_linear_and_every() -> None:
    assert sparsity_at(5, target=0.8, begin=0, end=10, kind="linear") == pytest.approx(0.4)
    assert sparsity_at(7, target=0.8, begin=0, end=10, kind="linear", every=5) == pytest.approx(0.4)
    assert sparsity_at(10, target=0.8, begin=0, end=10, kind="linear", every=3) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="schedule must be"):
        sparsity_at(1, target=0.5, begin=0, end=2, kind="exp")


@pytest.mark.parametrize("kind", ["oneshot", "linear", "cubic"])
def test_magnitude_pruning_follows_the_schedule_exactly(kind: str) -> None:
    net = small_convnet()
    units = ElementMasks(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    engine = DecayEngine(units, DecaySettings(policy="oneshot"))
    engine.optimizer = opt
    prune = MagnitudePruning(units, engine, target=0.9, begin=2, end=12, kind=kind, every=2)
    for step in range(1, 16):
        train_steps(net, units, engine, opt, 1, start=step - 1)
        norms = units.producer_norms().clone()
        started = prune.after_step(step)
        expected = sparsity_at(step, target=0.9, begin=2, end=12, kind=kind, every=2)
        assert units.sparsity() == pytest.approx(round(expected * units.num_structures) / units.num_structures)
        if len(started):  # the smallest of the weights still kept were the ones cut
            kept = ~units.pruned
            assert norms[started].max() <= norms[kept].min()
    assert units.sparsity() == pytest.approx(0.9, abs=1 / units.num_structures)


def test_magnitude_pruning_with_sp_reaches_the_target_n_steps_after_the_last_cut() -> None:
    net = small_convnet()
    units = ElementMasks(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    engine = DecayEngine(units, DecaySettings(policy="sp", steps=3))
    engine.optimizer = opt
    prune = MagnitudePruning(units, engine, target={"3": 0.8, "6": 0.5}, begin=1, end=5, kind="cubic", scope="layer")
    for step in range(1, 12):
        train_steps(net, units, engine, opt, 1, start=step - 1)
        prune.after_step(step)
    rows = {r["layer"]: r["sparsity"] for r in units.layer_sparsity()}
    assert rows == {"0": 0.0, "3": pytest.approx(0.8, abs=1 / 216), "6": 0.5}
    assert torch.all(units.per_weight(units.weights)[units.pruned] == 0)
