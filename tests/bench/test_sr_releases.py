"""The release analysis reads a run folder's events and weights: decay progress, re-selection, growth."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

from decayprune.jobs.build import save_weights
from decayprune.models import create

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
KWARGS = {"num_classes": 3, "in_channels": 1, "width": 0.25}


@pytest.fixture(autouse=True)
def _benchmarks_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports the defaults suite's helpers by name


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sr_releases", BENCHMARKS / "sr_releases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_folder(root: Path, events: list[dict], grow: float) -> Path:
    """A finished sp+sr run of small_cnn (N = 10) whose first conv's channel 0 ends ``grow`` times its base norm."""
    torch.manual_seed(0)
    model = create("small_cnn", **KWARGS)
    base = save_weights(model, root / "base.safetensors")
    with torch.no_grad():
        for tensor in (model.features[0].weight, model.features[1].weight, model.features[1].bias):
            tensor[0] *= grow
    run = root / "run"
    (run / "prune" / "checkpoint").mkdir(parents=True)
    save_weights(model, run / "prune" / "checkpoint" / "model.safetensors")
    arch = {"name": "small_cnn", "kwargs": KWARGS, "input_shape": [1, 8, 8]}
    (run / "pruned.json").write_text(json.dumps({"arch": arch}))
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"weights": str(base)}}))
    result = {"model": "small_cnn", "target_macs_fraction": 0.5, "decay": {"steps": 10}}
    (run / "result.json").write_text(json.dumps(result))
    (run / "prune" / "dpm_events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run


def _event(kind: str, step: int, unit: int) -> dict:
    return {"kind": kind, "step": step, "structure": unit, "layer": "features.0"}


def test_a_release_reports_its_decay_progress_growth_and_whether_it_was_picked_again(tmp_path: Path) -> None:
    # Structures 72-79 are the 8 channels of features.0; 72 is channel 0, the one that grows.
    events = [_event("start", 2, 72), _event("start", 3, 73), _event("release", 5, 72), _event("release", 4, 73)]
    events += [_event("start", 8, 73), _event("complete", 18, 73)]
    run = _run_folder(tmp_path, events, grow=100.0)
    record = _script().analyse_run(run)
    grown, undone = record["releases"]
    assert math.isclose(grown["decayed"], 0.3) and math.isclose(undone["decayed"], 0.1)
    assert (grown["reselected"], undone["reselected"]) == (False, True)
    assert grown["end_over_base"] == pytest.approx(100.0, rel=1e-4)
    assert undone["end_over_base"] == pytest.approx(1.0) and grown["kept_end_over_base"] == pytest.approx(1.0)
    assert (grown["blew_up"], undone["blew_up"]) == (True, False)
    assert 0 <= grown["base_pct"] < 100


def test_a_structure_that_keeps_its_norm_did_not_blow_up_and_the_table_pools_runs(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, [_event("start", 0, 72), _event("release", 9, 72)], grow=2.0)
    script = _script()
    runs = script.main([str(run), "--out", str(tmp_path / "table.md")])
    (release,) = runs[0]["releases"]
    assert release["end_over_base"] == pytest.approx(2.0, rel=1e-4) and not release["blew_up"]
    table = (tmp_path / "table.md").read_text()
    assert "| small_cnn | 50% | 1 | 1.0 | 0 | 0.90 |" in table


def test_a_folder_that_is_not_a_finished_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _script().main([str(tmp_path)])
    assert "not a finished prune run folder" in capsys.readouterr().err
