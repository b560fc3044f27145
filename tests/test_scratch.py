"""Train-from-scratch helpers: fresh weights on a pruned architecture, and the epoch budgets."""

from __future__ import annotations

import pytest
import torch

from decayprune import UserError, create_model
from decayprune.scratch import reinitialize, scratch_epochs, scratch_model
from decayprune.structure import save_pruned


def test_reinitialize_is_seeded_and_resets_bn_statistics() -> None:
    a = create_model("small_cnn", num_classes=10, in_channels=1)
    b = create_model("small_cnn", num_classes=10, in_channels=1)
    with torch.no_grad():
        a.features[1].running_mean.fill_(3.0)
    reinitialize(a, seed=5)
    reinitialize(b, seed=5)
    for (name, x), (_n, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert a.features[1].running_mean.abs().sum() == 0


def test_scratch_model_keeps_the_pruned_shapes_with_new_weights(tmp_path) -> None:
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    with torch.no_grad():
        model.features[0] = torch.nn.Conv2d(1, 20, 3, padding=1, bias=False)
        model.features[1] = torch.nn.BatchNorm2d(20)
        model.features[3] = torch.nn.Conv2d(20, 32, 3, padding=1, bias=False)
    save_pruned(model, tmp_path / "pruned", arch={"name": "small_cnn", "kwargs": {"num_classes": 10, "in_channels": 1}})
    fresh = scratch_model(tmp_path / "pruned", seed=1)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in fresh.state_dict().items()} == shapes
    assert not torch.equal(fresh.features[3].weight, model.features[3].weight)
    assert fresh(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_scratch_epochs() -> None:
    assert scratch_epochs(30, 100.0, 20.0, "E") == 30
    assert scratch_epochs(30, 100.0, 20.0, "B") == 150
    assert scratch_epochs(30, 100.0, 20.0, "B", max_factor=2) == 60
    with pytest.raises(UserError, match="'E'.*'B'"):
        scratch_epochs(30, 100.0, 20.0, "C")
