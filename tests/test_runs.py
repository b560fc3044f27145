"""Building the pieces of a run from its config."""

from __future__ import annotations

import torch

from decayprune.config import ModelConfig
from decayprune.runs import build_model


def test_build_model_seed_sets_the_initial_weights() -> None:
    def weights(seed: int) -> torch.Tensor:
        model = build_model(ModelConfig(name="small_cnn"), num_classes=10, in_channels=1, image_size=(8, 8), seed=seed)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(3), weights(3))
    assert not torch.equal(weights(3), weights(4))
