"""The criteria table (what ``decayprune criteria`` prints) and a smoke run of every criterion."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from criteria_testing import context

from decayprune import DecaySettings, Pruner, PruneSettings, TrainSettings, create_model, criteria_table, list_criteria
from decayprune.criteria import create_criterion

NEW = {"bn_scale", "bn_statistics", "taylor", "taylor_activation", "hrank", "chip", "thinet"}


def test_table_lists_every_criterion_with_needs_paper_and_options() -> None:
    rows = {row["name"]: row for row in criteria_table()}
    assert NEW <= set(rows) and set(rows) == set(list_criteria())
    for row in rows.values():
        assert row["summary"] and row["paper"], row["name"]
        assert set(row["needs"]) <= {"weights", "data", "grads", "hvp"}
    assert rows["taylor"]["needs"] == ["data", "grads"] and rows["bn_statistics"]["needs"] == ["weights"]
    order = rows["taylor"]["options"]["order"]
    assert order["default"] == 1 and "Hutchinson" in order["description"]


@pytest.mark.parametrize("name", sorted(NEW))
def test_every_new_criterion_scores_every_structure_of_mobilenet(name: str) -> None:
    torch.manual_seed(0)
    model = create_model("mobilenetv2_cifar", num_classes=4, in_channels=3, width=0.25)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ctx = context(model, x, [(x, torch.arange(2))])
    options = {"batches": 1} if name in {"taylor", "taylor_activation", "thinet"} else {}
    scores = create_criterion(name, **options).score(ctx)
    assert scores.shape == (ctx.structures.num_structures,)
    assert bool(torch.isfinite(scores).all()) and bool((scores >= 0).all())


LITERATURE = {"nisp": {"batches": 1}, "sosp_h": {"batches": 1}, "taylor": {"form": "bn", "batches": 1}}


@pytest.mark.parametrize("policy", ["oneshot", "sp", "sp+sr"])
@pytest.mark.parametrize("name", sorted(LITERATURE))
def test_literature_criteria_drive_the_iterative_method_under_every_policy(name: str, policy: str) -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=4, in_channels=1)
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(16) % 4
    decay = DecaySettings(policy=policy, steps=3)
    settings = PruneSettings(
        method="iterative", criterion=name, criterion_options=LITERATURE[name], target_macs_fraction=0.5, decay=decay
    )
    pruner = Pruner(model, x[:1], settings, total_steps=12, calibration_data=[(x, y)])
    opt = pruner.build_optimizer(TrainSettings(lr=0.01, device="cpu"))
    for _ in range(12):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        pruner.after_backward()
        opt.step()
        pruner.after_step()
    pruner.finish()
    assert pruner.structures.macs() / pruner.base_macs <= 0.55
    assert int(pruner.structures.pruned.sum()) > 0
