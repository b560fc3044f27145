"""Learning-rate schedules: endpoints, warm-up, milestones, and the per-step LambdaLR."""

from __future__ import annotations

import math

import pytest
import torch

from decayprune.train import TrainSettings, build_optimizer, build_scheduler, lr_at, lr_factor

SPE = 10  # steps per epoch


def test_cosine_endpoints_and_midpoint() -> None:
    s = TrainSettings(epochs=4, lr=0.2, schedule="cosine")
    total = s.epochs * SPE
    assert lr_at(0, s, SPE) == pytest.approx(0.2)
    assert lr_at(total // 2, s, SPE) == pytest.approx(0.1)
    assert lr_at(total, s, SPE) == pytest.approx(0.0, abs=1e-15)
    assert 0 < lr_at(total - 1, s, SPE) < 0.2 * 0.01  # the last real step still moves, a little
    lrs = [lr_at(k, s, SPE) for k in range(total + 1)]
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))


def test_cosine_with_warmup() -> None:
    s = TrainSettings(epochs=5, lr=0.1, schedule="cosine", warmup_epochs=1)
    assert lr_at(0, s, SPE) == pytest.approx(0.1 / SPE)
    assert lr_at(SPE - 1, s, SPE) == pytest.approx(0.1)  # warm-up ends at the peak
    assert lr_at(SPE, s, SPE) == pytest.approx(0.1)  # cosine starts at the peak
    warm = [lr_at(k, s, SPE) for k in range(SPE)]
    assert all(b > a for a, b in zip(warm, warm[1:]))
    post = s.epochs * SPE - SPE
    assert lr_at(SPE + post // 2, s, SPE) == pytest.approx(0.05)
    assert lr_at(s.epochs * SPE, s, SPE) == pytest.approx(0.0, abs=1e-15)


def test_step_schedule_milestones() -> None:
    s = TrainSettings(epochs=6, lr=0.1, schedule="step", milestones=[2, 4], gamma=0.1)
    assert lr_at(0, s, SPE) == pytest.approx(0.1)
    assert lr_at(2 * SPE - 1, s, SPE) == pytest.approx(0.1)
    assert lr_at(2 * SPE, s, SPE) == pytest.approx(0.01)
    assert lr_at(4 * SPE - 1, s, SPE) == pytest.approx(0.01)
    assert lr_at(4 * SPE, s, SPE) == pytest.approx(0.001)
    assert lr_at(6 * SPE - 1, s, SPE) == pytest.approx(0.001)


def test_constant_and_step_with_warmup() -> None:
    const = TrainSettings(epochs=3, lr=0.05, schedule="constant")
    assert {lr_at(k, const, SPE) for k in range(30)} == {0.05}
    step = TrainSettings(epochs=4, lr=0.1, schedule="step", milestones=[3], warmup_epochs=2)
    assert lr_at(0, step, SPE) == pytest.approx(0.1 / (2 * SPE))
    assert lr_at(2 * SPE, step, SPE) == pytest.approx(0.1)
    assert lr_at(3 * SPE, step, SPE) == pytest.approx(0.01)


def test_bad_arguments() -> None:
    s = TrainSettings(epochs=2)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        lr_factor(0, s, 0)
    with pytest.raises(ValueError, match="step"):
        lr_factor(-1, s, SPE)


@pytest.mark.parametrize("schedule", ["cosine", "step", "constant"])
def test_scheduler_gives_lr_at_each_optimizer_step(schedule: str) -> None:
    s = TrainSettings(
        epochs=3,
        lr=0.1,
        schedule=schedule,
        milestones=[1, 2] if schedule == "step" else [],
        warmup_epochs=1 if schedule != "step" else 0,
    )
    optimizer = build_optimizer(torch.nn.Linear(2, 2), s)
    scheduler = build_scheduler(optimizer, s, SPE)
    used = []
    for _ in range(s.epochs * SPE):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [lr_at(k, s, SPE) for k in range(s.epochs * SPE)]
    assert used == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert not math.isnan(sum(used))


def test_build_optimizer_kinds() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    model[1].weight.requires_grad_(False)
    sgd = build_optimizer(model, TrainSettings(nesterov=True, weight_decay=1e-3))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"]
    assert sgd.param_groups[0]["weight_decay"] == 1e-3
    assert len(sgd.param_groups[0]["params"]) == 3  # the frozen one is left out
    adamw = build_optimizer(model.parameters(), TrainSettings(optimizer="adamw", lr=1e-3))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["lr"] == 1e-3
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer([], TrainSettings())
