"""The ``max_redundancy`` method: layers pruned in forward order, each up to its measured maximum."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import ValidationError

from decayprune import DecaySettings, Pruner, PruneSettings, TrainSettings, UserError, create_model
from decayprune.criteria import caps_from_gradient_rank

X = torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
Y = torch.arange(64) % 2


def duplicated_mlp() -> nn.Module:
    """Layer '0' has 8 units made of 2 distinct ones, repeated (0, 2, 4, 6 alike; 1, 3, 5, 7 alike)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(net[0].weight[:2].repeat(4, 1))
        net[0].bias.copy_(net[0].bias[:2].repeat(4))
    return net


def train(pruner: Pruner, model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> Pruner:
    """``steps`` SGD steps on one batch with the pruner's three calls."""
    opt = pruner.build_optimizer(TrainSettings(lr=lr, device="cpu"))
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        pruner.after_backward()
        opt.step()
        pruner.after_step()
    return pruner


def prune(net: nn.Module, target: float) -> Pruner:
    """One oneshot selection by activation ranks (near-exact energy), then a few steps at a tiny lr."""
    settings = PruneSettings(
        method="max_redundancy",
        target_macs_fraction=target,
        iterative_steps=1,
        decay=DecaySettings(policy="oneshot"),
        method_options={"source": "activation", "energy": 0.999999},
    )
    return train(Pruner(net, X[:1], settings, total_steps=4, calibration_data=[(X, Y)]), net, X, Y, 4, 1e-6)


def pruned_fraction(pruner: Pruner, name: str) -> float:
    s = pruner.structures
    layer = next(g for g in s.layers if g.name == name)
    return float(s.pruned[layer.span].float().mean())


def test_units_counted_as_gone_leave_the_rank() -> None:
    net = duplicated_mlp()
    pruner = Pruner(net, X[:1], PruneSettings(method="iterative", target_macs_fraction=0.5), total_steps=40)
    view = pruner.context.scoring.with_batches([(X, Y)])
    gone = torch.zeros(pruner.structures.num_structures, dtype=torch.bool)
    assert caps_from_gradient_rank(view, source="activation", energy=0.999999)["0"] == pytest.approx(1 - 2 / 8)
    layer0 = next(g for g in pruner.structures.layers if g.name == "0")
    gone[layer0.ids[torch.tensor([0, 2, 4, 6])]] = True  # every copy of one distinct unit: one direction left
    caps = caps_from_gradient_rank(view, source="activation", energy=0.999999, gone=gone)
    assert caps["0"] == pytest.approx(1 - 1 / 8)


def test_the_first_layer_goes_to_its_maximum_before_the_next_is_touched() -> None:
    pruner = prune(duplicated_mlp(), target=0.5)
    assert 0 < pruned_fraction(pruner, "0") <= 0.75  # the rank allows 6 of 8
    assert pruned_fraction(pruner, "2") == 0.0  # the budget was met inside the first layer
    assert pruner.structures.macs() <= 0.5 * pruner.base_macs
    assert pruner.method.shortfalls == []


def test_the_target_wins_when_the_measured_maxima_fall_short() -> None:
    pruner = prune(duplicated_mlp(), target=0.2)
    assert pruner.structures.macs() <= 0.2 * pruner.base_macs
    assert pruner.method.shortfalls  # layer '2' has full rank: the fill went past the measured maxima
    assert pruned_fraction(pruner, "0") > 0.75  # forward order: the first layer gave more first


@pytest.mark.parametrize("policy", ["oneshot", "sp", "sp+sr"])
def test_max_redundancy_runs_under_every_policy_on_a_cnn(policy: str) -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=4, in_channels=1)
    x = torch.randn(160, 1, 8, 8, generator=torch.Generator().manual_seed(0))  # more samples than any layer's channels
    y = torch.arange(160) % 4
    settings = PruneSettings(
        method="max_redundancy",
        target_macs_fraction=0.5,
        iterative_steps=2,
        decay=DecaySettings(policy=policy, steps=3),
    )
    pruner = train(Pruner(model, x[:1], settings, total_steps=16, calibration_data=[(x, y)]), model, x, y, 16, 0.01)
    pruner.finish()
    assert pruner.structures.macs() <= 0.5 * pruner.base_macs * 1.01
    state = pruner.method.state_dict()
    assert set(state["caps"]) == {g.name for g in pruner.structures.layers}


def test_max_redundancy_refuses_a_layer_ranking_and_missing_calibration_data() -> None:
    with pytest.raises(ValidationError, match="ranking"):
        PruneSettings(method="max_redundancy", target_macs_fraction=0.5, method_options={"ranking": "layer"})
    model = create_model("small_cnn", num_classes=4, in_channels=1)
    with pytest.raises(UserError, match="calibration_data"):
        Pruner(
            model,
            torch.zeros(1, 1, 8, 8),
            PruneSettings(method="max_redundancy", target_macs_fraction=0.5),
            total_steps=8,
        )


def test_the_readme_block_of_max_redundancy_is_a_valid_prune_section() -> None:
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "method: max_redundancy" in b)
    settings = PruneSettings(**yaml.safe_load(block)["prune"])
    assert settings.method == "max_redundancy" and settings.method_options["energy"] == 0.99
