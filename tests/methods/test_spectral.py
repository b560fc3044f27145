"""The ``spectral_radius`` method: eigenvalue estimates every k steps, its penalty, pruning during training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from decayprune import DecaySettings, Pruner, PruneSettings, TrainSettings, UserError, create_model

X = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.arange(16) % 4


def train(strength: float, policy: str = "sp+sr") -> tuple[torch.nn.Module, Pruner]:
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=4, in_channels=1)
    settings = PruneSettings(
        method="spectral_radius",
        target_macs_fraction=0.5,
        decay=DecaySettings(policy=policy, steps=3),
        method_options={"every": 4, "strength": strength, "power_iters": 3},
    )
    pruner = Pruner(model, X[:1], settings, total_steps=16, calibration_data=[(X, Y)])
    opt = pruner.build_optimizer(TrainSettings(lr=0.01, device="cpu"))
    for _ in range(16):
        opt.zero_grad()
        F.cross_entropy(model(X), Y).backward()
        pruner.after_backward()
        opt.step()
        pruner.after_step()
    pruner.finish()
    return model, pruner


@pytest.mark.parametrize("policy", ["oneshot", "sp+sr"])
def test_spectral_radius_estimates_penalises_and_prunes_during_training(policy: str) -> None:
    penalised, p1 = train(1e-2, policy)
    plain, p2 = train(0.0, policy)
    steps = [s for s, _v in p1.method.eigenvalues]
    assert steps and all(s % 4 == 0 for s in steps) and all(v != 0 for _s, v in p1.method.eigenvalues)
    assert int(p1.structures.pruned.sum()) > 0 and p1.structures.macs() / p1.base_macs <= 0.55
    differs = any(not torch.equal(a, b) for a, b in zip(penalised.parameters(), plain.parameters(), strict=True))
    assert differs  # the penalty's gradient changed the training


def test_spectral_radius_needs_calibration_data() -> None:
    settings = PruneSettings(method="spectral_radius", target_macs_fraction=0.5)
    with pytest.raises(UserError, match="calibration_data"):
        Pruner(create_model("small_cnn", num_classes=4, in_channels=1), X[:1], settings, total_steps=8)
