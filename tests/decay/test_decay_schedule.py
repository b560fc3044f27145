"""The DPM decay schedule and the zeroing-policy settings."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from decayprune.decay import DecaySettings, decay_norm


@pytest.mark.parametrize("total", [1, 3, 10, 100])
def test_endpoints(total: int) -> None:
    assert decay_norm(2.5, total, 0).item() == pytest.approx(2.5)
    assert decay_norm(2.5, total, total).item() == 0.0


def test_linear_and_monotone() -> None:
    total = 7
    steps = torch.arange(0, total + 1)
    values = decay_norm(3.0, total, steps)
    torch.testing.assert_close(values, 3.0 * (total - steps.float()) / total)
    assert torch.all(values[1:] < values[:-1])


def test_clamps_outside_the_range() -> None:
    assert decay_norm(1.0, 4, 9).item() == 0.0
    assert decay_norm(1.0, 4, 1000).item() == 0.0
    assert decay_norm(1.0, 4, -3).item() == pytest.approx(1.0)


def test_per_structure_tensors_broadcast() -> None:
    l_init = torch.tensor([1.0, 2.0, 4.0])
    n = torch.tensor([0, 2, 4])
    torch.testing.assert_close(decay_norm(l_init, 4, n), torch.tensor([1.0, 1.0, 0.0]))


@pytest.mark.parametrize("total", [0, -1])
def test_needs_at_least_one_step(total: int) -> None:
    with pytest.raises(ValueError, match="total_steps"):
        decay_norm(1.0, total, 0)


def test_settings_flags_and_validation() -> None:
    assert not DecaySettings(policy="oneshot").smooth
    assert DecaySettings(policy="sp").smooth and not DecaySettings(policy="sp").self_rectifying
    assert DecaySettings(policy="sp+sr").self_rectifying
    with pytest.raises(ValidationError, match="policy"):
        DecaySettings(policy="gradual")
    with pytest.raises(ValidationError, match="steps"):
        DecaySettings(steps=0)
    with pytest.raises(ValidationError, match="window"):
        DecaySettings(window=0)
    with pytest.raises(ValidationError, match="extra"):
        DecaySettings(stepz=3)
    round_trip = DecaySettings.model_validate_json(DecaySettings(policy="sp", steps=5, window=3).model_dump_json())
    assert round_trip == DecaySettings(policy="sp", steps=5, window=3)
