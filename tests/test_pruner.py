"""Pruner end to end: every method x every zeroing policy meets its MACs budget on real data,
compaction preserves the function, and self-rectifying releases are backfilled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from sklearn.datasets import load_digits

from decayprune.config import TrainSettings
from decayprune.decay import DecaySettings
from decayprune.measure import count_cost
from decayprune.methods import list_methods, method_class
from decayprune.models import create
from decayprune.pruner import Pruner, PruneSettings

STEPS = 150
FAST_STEPS = 48  # the method x policy matrix: enough for 3 selections, 8-step decays and recovery
BATCH = 32


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    return x, torch.tensor(data.target)


READS_DATA = {"thinet", "spectral_radius", "max_redundancy"}  # methods whose criterion, penalty or caps read batches


def run_pruning(
    digits: tuple[torch.Tensor, torch.Tensor],
    settings: PruneSettings,
    *,
    steps: int = STEPS,
    run_dir: Path | None = None,
) -> tuple[torch.nn.Module, Pruner, torch.optim.Optimizer]:
    """Train small_cnn on digits with the pruner's three calls per step."""
    x_all, y_all = digits
    torch.manual_seed(0)
    model = create("small_cnn", num_classes=10, in_channels=1)
    # 160 samples: max_redundancy's ranks need more samples than the widest layer's 128 channels.
    calibration = [(x_all[:160], y_all[:160])] if settings.method in READS_DATA else None
    pruner = Pruner(model, x_all[:1], settings, total_steps=steps, run_dir=run_dir, calibration_data=calibration)
    # SGD(lr 0.05, momentum 0.9, wd 5e-4), or the method's own optimizer (OTOv2's DHSPG).
    opt = pruner.build_optimizer(TrainSettings(lr=0.05, momentum=0.9, weight_decay=5e-4, device="cpu"))
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y_all), (BATCH,), generator=g)
        loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
        opt.zero_grad()
        loss.backward()
        pruner.after_backward()
        opt.step()
        pruner.after_step()
    return model, pruner, opt


def check_budget_and_equivalence(
    model: torch.nn.Module, pruner: Pruner, opt: torch.optim.Optimizer, x: torch.Tensor, fraction: float
) -> None:
    base = count_cost(model, x[:1]).macs
    pruner.finish()
    pruner.structures.zero_pruned_(opt)
    assert pruner.structures.macs() <= pruner.final_macs
    model.eval()
    with torch.no_grad():
        masked = model(x[:64])
    report = pruner.compact()
    assert report.removed_structures == int(pruner.structures.pruned.sum()) > 0
    with torch.no_grad():
        compacted = model(x[:64])
    ratio = count_cost(model, x[:1]).macs / base
    assert abs(ratio - fraction) <= 0.01, ratio
    assert ((compacted - masked).norm() / masked.norm()).item() < 1e-5
    # The optimizer now drives the compacted parameters and can keep training them.
    held = {id(p) for group in opt.param_groups for p in group["params"]}
    assert held == {id(p) for p in model.parameters()}
    model.train()
    opt.zero_grad()
    F.cross_entropy(model(x[:8]), torch.zeros(8, dtype=torch.long)).backward()
    opt.step()


@pytest.mark.parametrize("policy", ["oneshot", "sp", "sp+sr"])
@pytest.mark.parametrize("method", [m for m in list_methods() if method_class(m).unit_kind == "channels"])
def test_every_method_and_policy_meets_the_budget(digits, method: str, policy: str) -> None:
    settings = PruneSettings(
        method=method, target_macs_fraction=0.4, iterative_steps=3, decay=DecaySettings(policy=policy, steps=8)
    )
    model, pruner, opt = run_pruning(digits, settings, steps=FAST_STEPS)
    assert pruner.step == FAST_STEPS
    kinds = {e["kind"] for e in pruner.events}
    if policy == "oneshot":
        assert kinds == {"oneshot"}
    else:
        assert {"start", "complete"} <= kinds and "oneshot" not in kinds
    # The schedule leaves room for the decay: nothing is still decaying at the end.
    assert not pruner.engine.decaying.any()
    check_budget_and_equivalence(model, pruner, opt, digits[0], 0.4)


def test_releases_are_backfilled_and_the_budget_still_holds(digits, tmp_path: Path) -> None:
    # Low thresholds release a good number of decaying structures (any push-back at all, with
    # twice the layer's mean gradient); a cool-down longer than the run keeps them out, so the
    # budget can only be met by replacements.
    decay = DecaySettings(policy="sp+sr", steps=20, t_rate=0.0, t_len=2.0, window=1, cooldown=10_000)
    settings = PruneSettings(method="depgraph", target_macs_fraction=0.4, iterative_steps=3, decay=decay)
    model, pruner, opt = run_pruning(digits, settings, run_dir=tmp_path)
    assert pruner.engine.releases > 0
    released = {e["structure"] for e in pruner.events if e["kind"] == "release"}
    assert len(released) == pruner.engine.releases  # never re-selected during the cool-down
    assert not pruner.structures.pruned[sorted(released)].any()
    for event in pruner.events:
        if event["kind"] == "release":
            assert event["c_rate"] > 0.0 and event["c_len"] > 2.0
    # Events are also appended to the run folder.
    lines = (tmp_path / "dpm_events.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == pruner.events
    assert pruner.summary()["releases"] == pruner.engine.releases
    check_budget_and_equivalence(model, pruner, opt, digits[0], 0.4)


def test_speed_up_target(digits) -> None:
    settings = PruneSettings(method="l1", speed_up=2.0, iterative_steps=2, decay=DecaySettings(policy="sp", steps=10))
    model, pruner, opt = run_pruning(digits, settings, steps=60)
    check_budget_and_equivalence(model, pruner, opt, digits[0], 0.5)


def test_state_dict_restores_progress(digits) -> None:
    settings = PruneSettings(
        method="depgraph", target_macs_fraction=0.5, iterative_steps=2, decay=DecaySettings(policy="sp", steps=10)
    )
    model, pruner, _opt = run_pruning(digits, settings, steps=30)
    state = pruner.state_dict()
    other = Pruner(create("small_cnn", num_classes=10, in_channels=1), digits[0][:1], settings, total_steps=30)
    other.load_state_dict(state)
    assert other.step == pruner.step == 30
    assert torch.equal(other.structures.pruned, pruner.structures.pruned)
    assert torch.equal(other.engine.decaying, pruner.engine.decaying)


# ---------------------------------------------------------------------------- schedule


def test_selection_schedule_and_linear_budget() -> None:
    model = create("small_cnn", num_classes=10, in_channels=1)
    settings = PruneSettings(
        method="depgraph", target_macs_fraction=0.4, iterative_steps=4, decay=DecaySettings(policy="sp", steps=10)
    )
    pruner = Pruner(model, torch.zeros(1, 1, 8, 8), settings, total_steps=100)
    steps = pruner.schedule.steps
    assert len(steps) == 4 and list(steps) == sorted(steps) and steps[0] >= 1
    # The last selection leaves the decay plus recovery time before the end.
    assert steps[-1] + settings.decay.steps <= 100
    assert pruner.macs_budget(0) == pytest.approx(pruner.base_macs)
    assert pruner.macs_budget(steps[-1]) == pytest.approx(pruner.final_macs)
    assert pruner.final_macs == pytest.approx(0.4 * pruner.base_macs)
    budgets = [pruner.macs_budget(s) for s in steps]
    assert all(a > b for a, b in zip(budgets, budgets[1:]))
    assert pruner.schedule.in_pruning_phase(steps[-1]) and not pruner.schedule.in_pruning_phase(steps[-1] + 1)


# ---------------------------------------------------------------------------- validation


def test_settings_need_exactly_one_target() -> None:
    with pytest.raises(ValidationError, match="exactly one of target_macs_fraction"):
        PruneSettings(method="depgraph")
    with pytest.raises(ValidationError, match="exactly one of target_macs_fraction"):
        PruneSettings(method="depgraph", target_macs_fraction=0.5, speed_up=2.0)
    assert PruneSettings(speed_up=4.0).remaining_macs_fraction() == 0.25
    assert PruneSettings(target_macs_fraction=0.3).remaining_macs_fraction() == 0.3


@pytest.mark.parametrize(
    ("key", "value"), [("target_macs_fraction", 1.5), ("target_macs_fraction", 0.0), ("speed_up", 0.5)]
)
def test_settings_reject_out_of_range_targets(key: str, value: float) -> None:
    with pytest.raises(ValidationError, match=key):
        PruneSettings(**{key: value})


def test_settings_reject_unknown_method_and_keys() -> None:
    with pytest.raises(ValidationError, match="depgraph") as info:
        PruneSettings(method="depgrap", target_macs_fraction=0.5)
    assert "did you mean 'depgraph'" in str(info.value)
    with pytest.raises(ValidationError, match="extra"):
        PruneSettings(target_macs_fraction=0.5, targetmacs=0.5)
    round_trip = PruneSettings.model_validate_json(
        PruneSettings(target_macs_fraction=0.5, width_multiple=4).model_dump_json()
    )
    assert round_trip == PruneSettings(target_macs_fraction=0.5, width_multiple=4)


def test_pruner_rejects_bad_arguments() -> None:
    model = create("small_cnn", num_classes=10, in_channels=1)
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="total_steps"):
        Pruner(model, x, PruneSettings(target_macs_fraction=0.5), total_steps=0)
    with pytest.raises(ValueError, match="no_such_layer"):
        Pruner(model, x, PruneSettings(target_macs_fraction=0.5, ignored_layers=["no_such_layer"]), total_steps=10)
    with pytest.raises(ValueError, match="bogus: got 1; unknown key"):
        Pruner(model, x, PruneSettings(target_macs_fraction=0.5, method_options={"bogus": 1}), total_steps=10)


def test_ignored_layers_are_never_pruned(digits) -> None:
    settings = PruneSettings(
        method="random",
        target_macs_fraction=0.5,
        iterative_steps=1,
        ignored_layers=["features.0"],
        decay=DecaySettings(policy="oneshot"),
    )
    model, pruner, _opt = run_pruning(digits, settings, steps=4)
    assert "features.0" not in [layer.name for layer in pruner.structures.layers]
    pruner.compact()
    assert model.features[0].out_channels == 32


def test_budget_wins_over_cooldown_when_candidates_run_out(digits) -> None:
    # Thresholds that release almost every decaying structure: with a cool-down longer than the
    # run, fresh candidates run out, and released structures must be picked again.
    decay = DecaySettings(policy="sp+sr", steps=10, t_rate=-0.5, t_len=1.0, window=1, cooldown=10_000)
    settings = PruneSettings(method="depgraph", target_macs_fraction=0.4, iterative_steps=3, decay=decay)
    model, pruner, opt = run_pruning(digits, settings)
    released = {e["structure"] for e in pruner.events if e["kind"] == "release"}
    assert pruner.engine.releases > len(released) or pruner.structures.pruned[sorted(released)].any()
    check_budget_and_equivalence(model, pruner, opt, digits[0], 0.4)


def test_compact_warns_when_the_schedule_cannot_reach_the_target(digits) -> None:
    # max_layer_ratio 0.1 caps every layer at 10% of its channels: 5% of the MACs is out of reach.
    settings = PruneSettings(
        method="depgraph",
        target_macs_fraction=0.05,
        iterative_steps=1,
        method_options={"max_layer_ratio": 0.1},
        decay=DecaySettings(policy="oneshot"),
    )
    _model, pruner, _opt = run_pruning(digits, settings, steps=5)
    with pytest.warns(UserWarning, match="above the target"):
        pruner.compact()


def _sigmoid_mlp() -> torch.nn.Module:
    nn = torch.nn
    return nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 6), nn.ReLU(), nn.PReLU(6), nn.Linear(6, 2))


@pytest.mark.parametrize("verify, expected", [(False, ["0", "2"]), ("auto", ["2"]), (True, ["2"])])
def test_pruner_verify_setting_refuses_inexact_groups(verify, expected) -> None:
    pruner = Pruner(
        _sigmoid_mlp(), torch.randn(1, 4), PruneSettings(target_macs_fraction=0.5, verify=verify), total_steps=10
    )
    assert sorted(layer.name for layer in pruner.structures.layers) == expected
    assert [f.kind for f in pruner.structures.frozen if f.layer == "0"] == ([] if verify is False else ["inexact"])


def test_pruner_ignored_types_keep_layers_whole() -> None:
    settings = PruneSettings(target_macs_fraction=0.5, verify=False, ignored_types=["PReLU"])
    pruner = Pruner(_sigmoid_mlp(), torch.randn(1, 4), settings, total_steps=10)
    assert [layer.name for layer in pruner.structures.layers] == ["0"]
    assert [(f.layer, f.kind) for f in pruner.structures.frozen if f.layer == "2"] == [("2", "ignored")]
    with pytest.raises(ValueError, match="BatchNorm2d"):
        bad = PruneSettings(target_macs_fraction=0.5, ignored_types=["BatchNorm2d"])
        Pruner(_sigmoid_mlp(), torch.randn(1, 4), bad, total_steps=10)


def test_prune_settings_validate_verify() -> None:
    with pytest.raises(ValidationError):
        PruneSettings(target_macs_fraction=0.5, verify="sometimes")
    with pytest.raises(ValidationError):
        PruneSettings(target_macs_fraction=0.5, verify_tolerance=0)
    assert PruneSettings(target_macs_fraction=0.5).verify == "auto"
