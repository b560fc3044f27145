"""Mixed precision in the Trainer: bfloat16 and float16 autocast on the CPU, the forms of ``train.amp``,
and the skip test of a GradScaler step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from decayprune.train import Trainer, TrainSettings, scale_of, step_skipped


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_trainer_autocasts_on_cpu(amp: str) -> None:
    seen: list[torch.dtype] = []
    net = _net()
    net[0].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    data = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))] * 2
    trainer = Trainer(net, data, data, TrainSettings(epochs=1, device="cpu", amp=amp), progress=False)
    result = trainer.fit()
    assert set(seen) == {torch.bfloat16 if amp == "bf16" else torch.float16}
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    assert result.final["samples"] == 16


def test_amp_setting_forms() -> None:
    assert TrainSettings(amp=True).amp == "fp16" and TrainSettings(amp=False).amp == "off"
    with pytest.raises(ValueError, match="amp"):
        TrainSettings(amp="fp8")
    with pytest.raises(ValueError, match="not available on device 'meta'"):
        TrainSettings(amp="fp16", device="meta")


def test_step_skipped_is_false_for_a_step_taken_and_without_scaling() -> None:
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", growth_interval=1)
    scaler.scale(net(torch.ones(2, 4)).sum()).backward()
    before = scale_of(scaler)
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() > float(before)  # the scale grew: the step was taken
    assert not bool(step_skipped(scaler, before))
    assert step_skipped(torch.amp.GradScaler("cpu", enabled=False), None) is False
