"""DivergenceGuard stops on NaN/inf loss keeping the last good checkpoint; ElapsedTime survives resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from decayprune.errors import TrainingDivergedError, UserError
from decayprune.jobs import DivergenceGuard, ElapsedTime
from decayprune.train import Trainer, TrainSettings, read_checkpoint_meta


class _PoisonAfter(nn.Module):
    """A linear model whose output turns NaN once ``poisoned`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.poisoned = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x)
        return out * float("nan") if self.poisoned else out


class _PoisonAtEpoch(ElapsedTime):
    def __init__(self, model: _PoisonAfter, epoch: int) -> None:
        super().__init__()
        self.model, self.epoch = model, epoch

    def on_epoch_end(self, trainer, epoch, metrics) -> None:
        if epoch + 1 == self.epoch:
            self.model.poisoned = True


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    model = _PoisonAfter()
    data = _data()
    trainer = Trainer(
        model,
        data,
        data,
        TrainSettings(epochs=4, device="cpu"),
        run_dir=tmp_path,
        hooks=[DivergenceGuard(), _PoisonAtEpoch(model, 2)],
        progress=False,
    )
    with pytest.raises(TrainingDivergedError, match=r"the loss became nan in epoch 3 \(step 7\)") as info:
        trainer.fit()
    assert isinstance(info.value, UserError) and info.value.epoch == 2 and info.value.step == 7
    assert read_checkpoint_meta(tmp_path / "checkpoint")["epoch"] == 2  # epochs 1-2 were good


def test_elapsed_time_adds_up_across_a_resume(tmp_path: Path) -> None:
    data = _data()
    first = ElapsedTime()
    Trainer(
        nn.Linear(4, 3),
        data,
        data,
        TrainSettings(epochs=1, device="cpu"),
        run_dir=tmp_path,
        hooks=[first],
        progress=False,
    ).fit()
    spent = first.total_s
    assert spent > 0 and first.total_s == spent  # frozen once training ended
    second = ElapsedTime()
    Trainer(
        nn.Linear(4, 3),
        data,
        data,
        TrainSettings(epochs=2, device="cpu"),
        run_dir=tmp_path,
        hooks=[second],
        progress=False,
    ).fit(resume=True)
    assert second.total_s > spent
    fresh = ElapsedTime()
    fresh.load_state_dict({"elapsed_s": 100.0})
    assert fresh.total_s == 100.0 and fresh.state_dict() == {"elapsed_s": 100.0}
