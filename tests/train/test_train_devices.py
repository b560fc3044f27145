"""AMP (fp16 on the CPU too) and channels-last (ignored on the CPU), exercised on CUDA when a GPU is present."""

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


def test_fp16_amp_runs_on_cpu_and_channels_last_is_ignored(tmp_path: Path, loader_cls) -> None:
    train, test = _images(loader_cls)
    settings = TrainSettings(epochs=2, amp=True, channels_last=True, device="cpu")
    trainer = Trainer(_cnn(), train, test, settings, run_dir=tmp_path, progress=False)
    trainer.fit()
    assert trainer.amp == "fp16" and trainer.scaler.is_enabled() and not trainer.channels_last
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    meta = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert meta["state"]["scaler"]["scale"] == trainer.scaler.get_scale() > 0
    resumed = Trainer(_cnn(), train, test, settings.model_copy(update={"epochs": 3}), run_dir=tmp_path, progress=False)
    with pytest.warns(UserWarning, match="epochs"):
        resumed.fit(resume=True)
    assert resumed.global_step == 3 * len(train) and resumed.scaler.is_enabled()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_amp_channels_last_training_and_resume_on_cuda(tmp_path: Path, loader_cls, amp: str) -> None:
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    train, test = _images(loader_cls)
    settings = TrainSettings(epochs=3, amp=amp, channels_last=True, device="cuda", lr=0.05)
    trainer = Trainer(_cnn(), train, test, settings, run_dir=tmp_path, progress=False)
    result = trainer.fit()
    assert trainer.use_amp and trainer.scaler.is_enabled() == (amp == "fp16")
    assert next(trainer.model.parameters()).is_cuda
    assert trainer.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert result.final["top1"] > 50.0
    meta = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert (meta["state"]["scaler"] is not None) == (amp == "fp16")
    resumed = Trainer(_cnn(), train, test, settings.model_copy(update={"epochs": 4}), run_dir=tmp_path, progress=False)
    with pytest.warns(UserWarning, match="epochs"):
        again = resumed.fit(resume=True)
    assert again.epochs_run == 1 and resumed.global_step == 4 * len(train)
