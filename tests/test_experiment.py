"""The prune job end to end on the embedded digits data (small and fast)."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from decayprune.config import load_config
from decayprune.experiment import run_prune_job
from decayprune.structure import load_pruned


def _cfg(tmp_path, policy: str = "sp+sr", **extra):
    values = {
        "name": f"job-{policy.replace('+', '-')}",
        "output_dir": str(tmp_path),
        "data": {"name": "digits", "train_subset": 400, "test_subset": 200},
        "model": {"name": "small_cnn"},
        "pretrain": {"epochs": 2, "batch_size": 64, "lr": 0.05, "device": "cpu"},
        "finetune": {"epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu"},
        "prune": {"method": "depgraph", "target_macs_fraction": 0.4, "iterative_steps": 2,
                  "decay": {"policy": policy, "steps": 3}},
    }
    values.update(extra)
    return load_config(None, values=values)


@pytest.mark.parametrize("policy", ["oneshot", "sp+sr"])
def test_prune_job_meets_target_and_writes_run_folder(tmp_path, policy):
    cfg = _cfg(tmp_path, policy)
    record = run_prune_job(cfg, progress=False)
    run = cfg.run_dir
    assert abs(record["final"]["macs"] / record["base"]["macs"] - 0.4) <= 0.01
    assert record["final"]["params"] < record["base"]["params"]
    # The compacted model keeps the masked model's accuracy exactly (same function).
    assert record["final"]["top1"] == pytest.approx(record["masked_top1"], abs=1e-9)
    saved = json.loads((run / "result.json").read_text())
    assert saved["policy"] == policy and saved["kind"] == "prune"
    events = [json.loads(line) for line in (run / "prune" / "dpm_events.jsonl").read_text().splitlines()]
    kinds = {e["kind"] for e in events}
    assert kinds <= {"oneshot", "start", "complete", "release", "forced"}
    assert ("oneshot" in kinds) == (policy == "oneshot")
    rebuilt = load_pruned(run / "pruned")
    state = load_file(str(run / "pruned.safetensors"))
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == {k: tuple(v.shape) for k, v in state.items()}


def test_prune_job_without_prune_section_is_refused(tmp_path):
    cfg = load_config(None, values={"name": "no-prune", "output_dir": str(tmp_path)})
    with pytest.raises(ValueError, match="no 'prune' section"):
        run_prune_job(cfg, progress=False)


def test_prune_job_reuses_the_base_model_on_resume(tmp_path):
    cfg = _cfg(tmp_path, "sp")
    first = run_prune_job(cfg, progress=False)
    base_file = cfg.run_dir / "base.safetensors"
    stamp = base_file.stat().st_mtime_ns
    second = run_prune_job(cfg, progress=False, resume=True)
    assert base_file.stat().st_mtime_ns == stamp
    assert second["base"]["top1"] == first["base"]["top1"]
