"""The defaults suite runs every variant from one base model per seed and reports paired differences."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch

from decayprune.measure import count_cost
from decayprune.models import create

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(autouse=True)
def _benchmarks_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its shared helpers (policy_runs) by name


def _suite() -> ModuleType:
    path = BENCHMARKS / "defaults.py"
    spec = importlib.util.spec_from_file_location("defaults_suite", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_torch_pruning_baseline_meets_the_macs_target_and_keeps_the_classifier() -> None:
    suite = _suite()
    model = create("small_cnn", num_classes=10, in_channels=1)
    example = torch.zeros(1, 1, 8, 8)
    base = count_cost(model, example).macs
    reached = suite.tp_prune_to_macs(model, example, 0.4, suite.TP_IMPORTANCE["tp-l2"]())
    assert reached <= 0.4 and reached > 0.3  # 1% ratio steps stop just under the target
    assert count_cost(model, example).macs / base == reached
    assert model(example).shape == (1, 10)


def test_paired_differences_and_overrides() -> None:
    suite = _suite()
    runs = [
        {"arch": "a", "budget": 0.2, "seed": s, "variant": v, "top1": t}
        for s, (x, y) in enumerate([(70.0, 71.0), (72.0, 72.5), (69.0, 70.5)])
        for v, t in (("m sp", y), ("m oneshot", x))
    ]
    mean, se, n = suite.paired(runs, "a", 0.2, "m sp", "m oneshot")
    assert n == 3 and math.isclose(mean, 1.0) and math.isclose(se, 0.5 / 3**0.5)
    assert suite.prune_overrides(["decay.steps=50", "recovery_fraction=0.5"]) == {
        "decay": {"steps": 50},
        "recovery_fraction": 0.5,
    }


def test_smoke_preset_runs_every_variant_from_one_base_per_seed(tmp_path: Path) -> None:
    suite = _suite()
    records = suite.main(["--preset", "smoke", "--output-dir", str(tmp_path)])
    variants = {"depgraph oneshot", "depgraph sp", "depgraph sp+sr", "tp-random", "tp-l2"}
    assert {r["variant"] for r in records} == variants and len(records) == 10
    for seed in (0, 1):
        bases = {r["base_top1"] for r in records if r["seed"] == seed}
        assert len(bases) == 1  # every variant of a seed pruned the same base model
    assert all(r["macs_pct"] <= 51.0 for r in records)  # target 50% of the MACs
    saved = json.loads((tmp_path / "defaults-smoke.json").read_text())
    assert len(saved["runs"]) == 10
    table = (tmp_path / "defaults-smoke.md").read_text()
    assert "sp+sr - tp-random" in table and "nan" not in table.split("paired differences")[1]
    assert (tmp_path / "defaults-smoke.png").stat().st_size > 0


def test_runs_of_several_invocations_merge_into_one_table(tmp_path: Path) -> None:
    suite = _suite()

    def run(seed: int, variant: str, top1: float) -> dict:
        return {
            "arch": "a",
            "budget": 0.2,
            "seed": seed,
            "variant": variant,
            "top1": top1,
            "macs_pct": 20.0,
            "releases": 0,
        }

    first = {"wall_s": 10.0, "runs": [run(s, "m sp", 70.0 + s) for s in (0, 1)] + [run(0, "tp-random", 1.0)]}
    second = {"wall_s": 5.0, "runs": [run(0, "tp-random", 69.0), run(1, "tp-random", 69.5)]}
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, tree in zip(paths, (first, second), strict=True):
        path.write_text(json.dumps(tree))
    records, wall = suite.merge_runs(paths)
    assert wall == 15.0 and len(records) == 4  # the first file's tp-random of seed 0 is replaced
    mean, _, n = suite.paired(records, "a", 0.2, "m sp", "tp-random")
    assert n == 2 and math.isclose(mean, ((70.0 - 69.0) + (71.0 - 69.5)) / 2)
    merged = suite.main(["--from-json", *map(str, paths), "--output-dir", str(tmp_path), "--tag", "merged"])
    assert len(merged) == 4
    assert "sp+sr - tp-random" in (tmp_path / "defaults-cpu-a-merged.md").read_text()


def test_a_job_count_below_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _suite().main(["--preset", "smoke", "--jobs", "0"])
    assert "--jobs: got 0; allowed: 1 or more" in capsys.readouterr().err


def test_a_finetune_length_needs_a_tag_that_keeps_its_runs_apart(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _suite().main(["--preset", "smoke", "--finetune-epochs", "4"])
    assert "--finetune-epochs: a positive epoch count, with a --tag" in capsys.readouterr().err


def test_a_finetune_length_changes_the_fine_tune_and_not_the_base() -> None:
    suite = _suite()
    args = argparse.Namespace(preset="smoke", device="cpu", data_dir=None, output_dir=Path("runs"), finetune_epochs=5)
    cfg = suite.run_config(args, "small_cnn", 0.5, 0, "x", {})
    assert cfg.finetune.epochs == 5 and cfg.finetune.eval_every == 5
    assert cfg.pretrain.epochs == suite.PRESETS["smoke"]["pretrain"]["epochs"]


def test_a_study_is_paired_by_seed_with_the_same_variant_of_a_baseline_file(tmp_path: Path) -> None:
    suite = _suite()

    def run(seed: int, top1: float, releases: int) -> dict:
        rec = {"arch": "a", "budget": 0.4, "seed": seed, "variant": "m sp+sr", "top1": top1, "releases": releases}
        return {**rec, "macs_pct": 40.0}

    study = [run(0, 71.0, 4), run(1, 73.0, 2), run(2, 60.0, 0)]
    baseline = [run(0, 70.0, 10), run(1, 70.0, 20)]  # seed 2 has no baseline run: left out
    table = suite.table_markdown(suite.against_table(study, baseline, "base.json"))
    assert "| a | 40% | m sp+sr | 2 | 3.0 (15.0) | 72.00 | +2.00 ± 1.00 |" in table
    (tmp_path / "base.json").write_text(json.dumps({"wall_s": 1.0, "runs": baseline}))
    (tmp_path / "study.json").write_text(json.dumps({"wall_s": 1.0, "runs": study}))
    args = ["--from-json", str(tmp_path / "study.json"), "--against", str(tmp_path / "base.json")]
    suite.main([*args, "--output-dir", str(tmp_path), "--tag", "study"])
    assert "minus the same variant in base.json" in (tmp_path / "defaults-cpu-a-study.md").read_text()
