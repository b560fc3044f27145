"""The prune job end to end on the embedded digits data (small and fast)."""

from __future__ import annotations

import json
import re

import pytest
from rich.console import Console
from safetensors.torch import load_file

from decayprune.config import load_config
from decayprune.errors import ConfigError, RunFolderError, ScheduleError, TrainingDivergedError
from decayprune.jobs import results as results_module
from decayprune.jobs import run_prune_job
from decayprune.structure import load_pruned

QUIET = Console(quiet=True)


def _cfg(tmp_path, policy: str = "sp+sr", **extra):
    values = {
        "name": f"job-{policy.replace('+', '-')}",
        "output_dir": str(tmp_path),
        "data": {"name": "digits", "train_subset": 400, "test_subset": 200},
        "model": {"name": "small_cnn"},
        "pretrain": {"epochs": 2, "batch_size": 64, "lr": 0.05, "device": "cpu"},
        "finetune": {"epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu"},
        "prune": {
            "method": "depgraph",
            "target_macs_fraction": 0.4,
            "iterative_steps": 2,
            "decay": {"policy": policy, "steps": 3},
        },
    }
    values.update(extra)
    return load_config(None, values=values)


def _documented_fields() -> set[str]:
    return set(re.findall(r"``([a-z_0-9]+)``", results_module.__doc__ or ""))


@pytest.mark.parametrize("policy", ["oneshot", "sp+sr"])
def test_prune_job_meets_target_and_writes_run_folder(tmp_path, policy):
    cfg = _cfg(tmp_path, policy)
    record = run_prune_job(cfg, progress=False, console=QUIET)
    run = cfg.run_dir
    assert abs(record["final"]["macs"] / record["base"]["macs"] - 0.4) <= 0.01
    assert record["final"]["params"] < record["base"]["params"]
    # The compacted model keeps the masked model's accuracy exactly (same function).
    assert record["final"]["top1"] == pytest.approx(record["masked_top1"], abs=1e-9)
    saved = json.loads((run / "result.json").read_text())
    assert saved == record and saved["policy"] == policy and saved["status"] == "ok"
    assert saved["decay"] == (
        {}
        if policy == "oneshot"
        else {
            "steps": 3,
            "t_rate": cfg.prune.decay.t_rate,
            "t_len": cfg.prune.decay.t_len,
            "window": cfg.prune.decay.window,
            "cooldown": cfg.prune.decay.cooldown,
        }
    )
    assert set(saved) <= _documented_fields(), "every result.json field is documented in jobs/results.py"
    assert all(key in (results_module.__doc__ or "") for key in saved["base"])
    assert saved["wall_time_s"] == pytest.approx(sum(saved["phase_time_s"].values()))
    events = [json.loads(line) for line in (run / "prune" / "dpm_events.jsonl").read_text().splitlines()]
    kinds = {e["kind"] for e in events}
    assert kinds <= {"oneshot", "start", "complete", "release", "forced"} <= _documented_fields()
    assert ("oneshot" in kinds) == (policy == "oneshot")
    rebuilt = load_pruned(run / "pruned")
    state = load_file(str(run / "pruned.safetensors"))
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == {k: tuple(v.shape) for k, v in state.items()}
    if policy == "oneshot":  # a fresh re-run (--overwrite) starts the event log afresh
        run_prune_job(cfg, overwrite=True, progress=False, console=QUIET)
        again = (run / "prune" / "dpm_events.jsonl").read_text().splitlines()
        assert len(again) == len(events)


def test_prune_job_without_prune_section_is_refused(tmp_path):
    cfg = load_config(None, values={"name": "no-prune", "output_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="no 'prune' section"):
        run_prune_job(cfg, progress=False, console=QUIET)


def test_a_schedule_that_cannot_prune_is_refused_before_work(tmp_path):
    cfg = _cfg(tmp_path, "sp", prune={"method": "depgraph", "target_macs_fraction": 0.5, "start_epoch": 5})
    with pytest.raises(ScheduleError, match="start_epoch=5"):
        run_prune_job(cfg, progress=False, console=QUIET)
    assert not cfg.run_dir.exists()


def test_resume_reuses_the_base_model_only_when_its_settings_match(tmp_path):
    cfg = _cfg(tmp_path, "sp")
    first = run_prune_job(cfg, progress=False, console=QUIET)
    base_file = cfg.run_dir / "base.safetensors"
    stamp = base_file.stat().st_mtime_ns
    second = run_prune_job(cfg, progress=False, resume=True, console=QUIET)
    assert base_file.stat().st_mtime_ns == stamp
    assert second["base"]["top1"] == first["base"]["top1"] and second["final"]["top1"] == first["final"]["top1"]
    assert second["epochs"] == first["epochs"] == {"pretrain": 2, "sparse_learning": 0, "finetune": 2}
    # Totals survive the resume: the earlier training time is counted, not reset to this invocation's.
    assert second["phase_time_s"]["pretrain"] == first["phase_time_s"]["pretrain"]
    # (counted up to the last checkpoint; a reset would leave only this invocation's milliseconds)
    assert second["phase_time_s"]["finetune"] >= 0.5 * first["phase_time_s"]["finetune"]
    meta = json.loads((cfg.run_dir / "base.json").read_text())
    (cfg.run_dir / "base.json").write_text(json.dumps({**meta, "config_hash": "0" * 16}))
    with pytest.raises(RunFolderError, match="was trained for other model/data/pretrain settings"):
        run_prune_job(cfg, progress=False, resume=True, console=QUIET)


def test_nan_loss_writes_a_failed_result(tmp_path, monkeypatch):
    import torch

    import decayprune.jobs.prune as prune_module
    from decayprune.train.losses import CrossEntropyLoss

    class NanAfterPretraining(CrossEntropyLoss):
        calls = 0

        def __call__(self, outputs, labels):
            loss = super().__call__(outputs, labels)
            if not torch.is_grad_enabled():  # evaluation
                return loss
            NanAfterPretraining.calls += 1
            return loss * float("nan") if NanAfterPretraining.calls > 14 else loss  # 7 steps/epoch x 2 epochs

    monkeypatch.setattr(prune_module, "run_loss", lambda cfg: NanAfterPretraining())
    cfg = _cfg(tmp_path, "sp")
    with pytest.raises(TrainingDivergedError, match="training diverged: the loss became nan"):
        run_prune_job(cfg, progress=False, console=QUIET)
    saved = json.loads((cfg.run_dir / "result.json").read_text())
    assert saved["status"] == "failed" and "diverged" in saved["error"] and saved["kind"] == "prune"
    assert (cfg.run_dir / "base.safetensors").is_file()  # pretraining finished and was kept


def test_the_job_builds_its_schedule_once(tmp_path, monkeypatch):
    from decayprune.methods.schedule import SelectionSchedule

    built = []
    original = SelectionSchedule.from_settings.__func__  # type: ignore[attr-defined]

    def counting(cls, *args, **kwargs):
        built.append(args[1:])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(SelectionSchedule, "from_settings", classmethod(counting))
    cfg = _cfg(tmp_path, "sp", prune={"method": "l1", "target_macs_fraction": 0.5, "decay": {"policy": "sp"}})
    record = run_prune_job(cfg, progress=False, console=QUIET)
    assert len(built) == 1  # check_schedule's, handed to the Pruner
    assert record["decay"]["steps"] < 100  # decay.steps unset: the fitted N reaches the record


def test_a_latency_budget_job_caches_its_table_and_records_the_check(tmp_path):
    prune = {
        "method": "depgraph",
        "target_latency_fraction": 0.6,
        "iterative_steps": 1,
        "decay": {"policy": "oneshot"},
        "latency": {"device": "cpu", "grid": 3, "repeats": 3},
    }
    cfg = _cfg(tmp_path, "oneshot", prune=prune)
    record = run_prune_job(cfg, progress=False, console=QUIET)
    assert (cfg.run_dir / "prune" / "latency_table.json").is_file()
    assert record["target_latency_fraction"] == 0.6 and "target_macs_fraction" not in record
    budget = record["latency_budget"]
    assert budget["device"] == "cpu" and budget["predicted_fraction"] <= 0.6 + 0.01  # the table's prediction
    assert budget["within_tolerance"] == (budget["measured_fraction"] <= 0.6 * (1 + budget["tolerance"]))
    assert record["base"]["macs_counter"] == "torch_pruning+flop_counter"
    assert set(record) <= _documented_fields() and set(budget) <= _documented_fields()


def test_the_masked_model_is_not_evaluated_twice(tmp_path, monkeypatch):
    import decayprune.jobs.prune as prune_job

    calls = []
    original = prune_job.evaluate
    monkeypatch.setattr(prune_job, "evaluate", lambda *a, **k: calls.append(1) or original(*a, **k))
    record = run_prune_job(_cfg(tmp_path, "sp"), progress=False, console=QUIET)
    assert calls == []  # no decay was left for finish(): the trainer's last test pass is the masked model's
    assert record["masked_top1"] == pytest.approx(record["final"]["top1"], abs=1e-9)


def test_masked_metrics_are_taken_again_when_finish_changed_the_model():
    from types import SimpleNamespace

    from decayprune.jobs.prune import _masked_metrics

    final = {"top1": 50.0, "top5": 90.0}
    assert _masked_metrics(final, SimpleNamespace(forced_at_finish=0)) is final
    assert _masked_metrics(final, SimpleNamespace(forced_at_finish=3)) is None  # decays zeroed after the last test
    assert _masked_metrics(final, SimpleNamespace(forced_at_finish=None)) is None  # finish() never ran
    assert _masked_metrics({}, SimpleNamespace(forced_at_finish=0)) is None  # no test loader
