"""check_model / format_report / resolve_model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from decayprune.errors import UserError
from decayprune.jobs.model_check import check_model, format_report
from decayprune.models import resolve_model


def test_check_passes_on_a_resnet_and_leaves_the_model_untouched() -> None:
    model = resolve_model("resnet20", num_classes=10)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    r = check_model(model, torch.randn(1, 3, 32, 32), name="resnet20")
    assert r.passed and r.error < 1e-5 and 0.6 < r.macs_fraction <= 0.71 and r.params_after < r.params_before
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())
    text = format_report(r)
    assert text.startswith("resnet20: PASS") and "MACs" in text and "compaction error" in text
    assert "classifier [output" in text


def _sigmoid_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.Sigmoid(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))


def test_check_detects_a_wrong_compaction_when_the_exactness_check_is_off() -> None:
    torch.manual_seed(0)
    bad = check_model(_sigmoid_net(), torch.randn(1, 4), verify=False)
    assert not bad.passed and bad.error > 1e-3
    good = check_model(_sigmoid_net(), torch.randn(1, 4))
    assert good.passed and [f.layer for f in good.frozen if f.kind == "inexact"] == ["0"]
    assert "FAIL" in format_report(bad) and "[inexact" in format_report(good)


def test_check_reports_a_model_with_nothing_prunable() -> None:
    r = check_model(nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2)), torch.randn(1, 4))
    assert not r.passed and r.message == "no channel group can be pruned exactly" and r.error == 0.0
    assert "LayerNorm '1'" in format_report(r)


def test_check_reports_an_untraceable_model() -> None:
    class Shuffle(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.b = nn.Conv2d(8, 8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x)
            n, c, h, w = y.shape
            y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
            return self.b(y).mean((2, 3))

    r = check_model(Shuffle(), torch.randn(1, 3, 4, 4))
    assert not r.passed and (r.message or "") and not (r.error is not None and math.isinf(r.error))


def test_resolve_model_forms() -> None:
    assert type(resolve_model("small_cnn", in_channels=1)).__name__ == "SmallCNN"
    assert isinstance(resolve_model("torch.nn:Linear", in_features=2, out_features=3), nn.Linear)
    with pytest.raises(UserError, match="resnet"):
        resolve_model("resnet2O")
    with pytest.raises(UserError, match="package.module:function"):
        resolve_model("no_such_pkg.mod:build")
    with pytest.raises(UserError, match="not a torch.nn.Module"):
        resolve_model("collections:OrderedDict")
    with pytest.raises(UserError, match="NoSuchConfig"):
        resolve_model("transformers:NoSuchConfig")
    with pytest.raises(UserError, match="target_macs_fraction"):
        check_model(nn.Linear(2, 2), torch.randn(1, 2), target_macs_fraction=1.5)


def test_check_with_steps_runs_the_sp_sr_pipeline_and_compacts_exactly() -> None:
    torch.manual_seed(0)
    r = check_model(resolve_model("small_cnn", in_channels=1), torch.randn(1, 1, 8, 8), steps=9)
    assert r.passed and r.error < 1e-5 and r.macs_fraction < 0.75


def test_pruner_refuses_structures_of_another_model() -> None:
    from decayprune.config import PruneSettings
    from decayprune.pruner import Pruner
    from decayprune.structure import StructureSet

    net, other = _sigmoid_net(), _sigmoid_net()
    s = StructureSet(other, torch.randn(1, 4))
    with pytest.raises(ValueError, match="another model"):
        Pruner(net, torch.randn(1, 4), PruneSettings(target_macs_fraction=0.5), total_steps=5, structures=s)
    p = Pruner(other, torch.randn(1, 4), PruneSettings(target_macs_fraction=0.5), total_steps=5, structures=s)
    assert p.structures is s


def test_the_package_serves_check_model_from_jobs() -> None:
    import decayprune
    from decayprune.jobs import model_check

    assert decayprune.check_model is model_check.check_model and decayprune.format_report is format_report
    with pytest.raises(AttributeError, match="no_such_name"):
        decayprune.no_such_name  # noqa: B018
