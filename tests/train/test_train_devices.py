"""AMP and channels-last: ignored on CPU, exercised on CUDA when a GPU is present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from decayprune.train import Trainer, TrainSettings


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def _images(loader_cls, device: str = "cpu"):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (64,), generator=g)
    x = torch.randn(64, 1, 6, 6, generator=g) + y.view(-1, 1, 1, 1).float()
    return loader_cls(x, y, 16, shuffle=True), loader_cls(x, y, 32, shuffle=False)


def test_amp_and_channels_last_are_ignored_on_cpu(tmp_path: Path, loader_cls) -> None:
    train, test = _images(loader_cls)
    settings = TrainSettings(epochs=1, amp=True, channels_last=True, device="cpu")
    trainer = Trainer(_cnn(), train, test, settings, run_dir=tmp_path, progress=False)
    trainer.fit()
    assert not trainer.use_amp and not trainer.channels_last and not trainer.scaler.is_enabled()
    meta = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert meta["state"]["scaler"] is None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_amp_channels_last_training_and_resume_on_cuda(tmp_path: Path, loader_cls) -> None:
    train, test = _images(loader_cls)
    settings = TrainSettings(epochs=3, amp=True, channels_last=True, device="cuda", lr=0.05)
    trainer = Trainer(_cnn(), train, test, settings, run_dir=tmp_path, progress=False)
    result = trainer.fit()
    assert trainer.use_amp and trainer.scaler.is_enabled()
    assert next(trainer.model.parameters()).is_cuda
    assert trainer.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert result.final["top1"] > 50.0
    meta = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert meta["state"]["scaler"]["scale"] > 0
    resumed = Trainer(_cnn(), train, test, settings.model_copy(update={"epochs": 4}), run_dir=tmp_path, progress=False)
    with pytest.warns(UserWarning, match="epochs"):
        again = resumed.fit(resume=True)
    assert again.epochs_run == 1 and resumed.global_step == 4 * len(train)
