"""The demo: one base model, one method, the three zeroing policies, one table."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_testing import run_cli

from decayprune.cli import demo
from decayprune.jobs import check_schedule


def test_demo_configs_compare_policies_of_one_method(tmp_path: Path) -> None:
    configs = demo.demo_configs(tmp_path)
    assert [label for label, _ in configs] == ["oneshot", "sp", "sp+sr"]
    assert {cfg.prune.decay.policy for _, cfg in configs} == {"oneshot", "sp", "sp+sr"}
    assert {cfg.prune.method for _, cfg in configs} == {"depgraph"}
    assert {cfg.prune.remaining_macs_fraction() for _, cfg in configs} == {0.5}
    assert all((cfg.finetune, cfg.pretrain) == (configs[0][1].finetune, configs[0][1].pretrain) for _, cfg in configs)
    for _, cfg in configs:  # the shipped demo schedule fits its run (digits: 1437 train images, batch 64)
        check_schedule(cfg.prune, epochs=cfg.finetune.epochs, steps_per_epoch=-(-1437 // 64))


def test_the_demo_runs_decayprunes_defaults_and_leaves_self_rectifying_room_to_release(tmp_path: Path) -> None:
    _, cfg = demo.demo_configs(tmp_path)[2]
    prune = cfg.prune
    assert prune.decay.model_fields_set == {"policy"} and prune.iterative_steps is None  # nothing but the policy
    schedule = check_schedule(prune, epochs=cfg.finetune.epochs, steps_per_epoch=-(-1437 // 64))
    # A release needs W decay steps before it and a backfill that still fits: the window opens before last_start.
    assert schedule.steps == (1,) and schedule.last_start > 1 + prune.decay.window


def test_demo_runs_and_prints_clean_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = dict(demo.DEMO_SETTINGS, **{"data.train_subset": 256, "data.test_subset": 64})
    small["pretrain"] = dict(small["pretrain"], epochs=1)
    small["finetune"] = dict(small["finetune"], epochs=2)
    monkeypatch.setattr(demo, "DEMO_SETTINGS", small)
    monkeypatch.setattr(
        demo,
        "DEMO_POLICIES",
        tuple((label, {**d, "steps": 2} if "steps" in d else d) for label, d in demo.DEMO_POLICIES),
    )
    for _ in range(2):  # a second demo replaces the first's run folders (no appended event logs)
        code, out, err = run_cli(capsys, ["demo", "--output-dir", str(tmp_path)])
        assert code == 0, err
    for text in (
        "phase 1/3: pretraining",
        "phase 2/3: pruning depgraph + sp+sr",
        "phase 3/3: compaction removed",
        "depgraph oneshot",
        "depgraph sp ",
        "depgraph sp+sr",
    ):
        assert text in out
    assert out.count("phase 1/3") == 1  # one base model for all three policies
    pruning_lines = [line for line in out.splitlines() if line.startswith("epoch") and "| MACs" in line]
    assert pruning_lines and all("decaying" in line and "releases" in line for line in pruning_lines)
    assert "loss nan" not in out + err
    assert max(len(line) for line in out.splitlines()) > 80  # redirected output is not wrapped at 80 columns
    events = (tmp_path / "demo-depgraph-sp" / "prune" / "dpm_events.jsonl").read_text().splitlines()
    assert events and len(events) == len(set(events))
