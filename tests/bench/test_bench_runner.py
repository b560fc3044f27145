"""Running a bench: every cell is a prune run, finished cells are skipped, an interrupted bench resumes."""

from __future__ import annotations

import json

import pytest
from bench_testing import write_bench

from decayprune.bench import load_bench, plan, run_bench
from decayprune.bench import runner as runner_module
from decayprune.cli import main
from decayprune.errors import RunFolderError


def test_tiny_matrix_completes_and_shares_the_base_model(tiny_bench):
    rows = plan(tiny_bench)
    assert [r.state for r in rows] == ["finished"] * 8
    for row in rows:
        result = json.loads((tiny_bench.bench_dir / row.cell.name / "result.json").read_text())
        assert result["status"] == "ok" and result["method"] == row.cell.method
        assert result["policy"] == row.cell.policy and result["seed"] == row.cell.seed
        assert result["final"]["macs"] < result["base"]["macs"]
    # followers start from their seed's leader base model: same base accuracy within a seed
    by_seed: dict[int, set[float]] = {}
    for row in rows:
        result = json.loads((tiny_bench.bench_dir / row.cell.name / "result.json").read_text())
        by_seed.setdefault(row.cell.seed, set()).add(result["base"]["top1"])
        assert (row.leader is None) == (row.cell.method == "depgraph" and row.cell.policy == "oneshot")
    assert all(len(v) == 1 for v in by_seed.values())
    status = json.loads((tiny_bench.bench_dir / "bench.json").read_text())
    assert {c["status"] for c in status["cells"]} == {"finished"}


def test_a_second_run_skips_every_finished_cell(tiny_bench):
    before = {p: p.stat().st_mtime_ns for p in tiny_bench.bench_dir.glob("*/result.json")}
    summary = run_bench(tiny_bench)
    assert len(summary.names("skipped")) == 8 and summary.names("ran") == []
    assert {p: p.stat().st_mtime_ns for p in tiny_bench.bench_dir.glob("*/result.json")} == before


def test_an_interrupted_bench_resumes_without_rerunning_finished_cells(tmp_path, monkeypatch):
    spec = load_bench(write_bench(tmp_path, matrix={"method": ["l1"], "policy": ["oneshot", "sp"], "seed": [0, 1]}))
    ran: list[str] = []
    real = runner_module.run_cell

    def counting(spec_, cell, weights, threads):
        ran.append(cell.name)
        return real(spec_, cell, weights, threads)

    monkeypatch.setattr(runner_module, "run_cell", counting)

    def interrupt_after_two(outcome, counts):
        if counts["done"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_bench(spec, on_outcome=interrupt_after_two)
    first = list(ran)
    assert len(first) == 2
    done = {p.parent.name: p.stat().st_mtime_ns for p in spec.bench_dir.glob("*/result.json")}
    assert set(done) == set(first)
    ran.clear()
    summary = run_bench(spec)
    assert sorted(summary.names("skipped")) == sorted(first)
    assert len(ran) == 2 and not set(ran) & set(first)
    assert {
        p.parent.name: p.stat().st_mtime_ns for p in spec.bench_dir.glob("*/result.json") if p.parent.name in done
    } == done
    assert [r.state for r in plan(spec)] == ["finished"] * 4


def test_a_finished_cell_with_other_settings_is_reported_not_reused(tmp_path):
    matrix = {"method": ["random"], "policy": ["oneshot"], "seed": [0]}
    spec = load_bench(write_bench(tmp_path, matrix=matrix))
    assert run_bench(spec).names("ran")
    tree = dict(spec.base, finetune={**spec.base["finetune"], "lr": 0.5})
    changed = spec.model_copy(update={"base": tree})
    with pytest.raises(RunFolderError, match="finetune.lr"):
        run_bench(changed)


def test_a_failing_cell_does_not_stop_the_bench(tmp_path, capsys):
    matrix = {"method": ["random"], "policy": ["oneshot", "sp"], "seed": [0]}
    path = write_bench(tmp_path, matrix=matrix)
    spec = load_bench(path)
    leader = spec.bench_dir / "small_cnn-synthetic-random-oneshot-s0"
    leader.mkdir(parents=True)
    (leader / "junk.txt").write_text("in the way")  # the leader cannot start: its follower has no base model
    assert main(["bench", str(path), "--no-report"]) == 1
    out = capsys.readouterr().out
    assert "2 failed" in out and "already holds files" in out and "base model" in out


def test_dry_run_prints_the_matrix_and_runs_nothing(tmp_path, capsys):
    path = write_bench(tmp_path)
    assert main(["bench", str(path), "--dry-run", "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "8 cells to run" in out and "training epochs" in out and "small_cnn-synthetic-l1-sp-sr-s1" in out
    assert not (tmp_path / "runs" / "tiny").exists()


def test_jobs_spread_cells_over_processes(tmp_path, capsys):
    path = write_bench(tmp_path, matrix={"method": ["l1"], "policy": ["oneshot", "sp"], "seed": [0, 1]})
    assert main(["bench", str(path), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 ran, 0 failed" in out
    spec = load_bench(path)
    assert [r.state for r in plan(spec)] == ["finished"] * 4
    assert (spec.bench_dir / "report" / "report.html").is_file()
    # with a timed cell, the dry run now estimates the seconds left (none: all finished)
    assert main(["bench", str(path), "--dry-run"]) == 0
    assert "0 cells to run" in capsys.readouterr().out


def test_a_cell_that_another_process_runs_is_left_alone(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    spec = load_bench(write_bench(tmp_path, matrix={"method": ["random"], "policy": ["oneshot"], "seed": [0]}))
    lock = spec.bench_dir / "logs" / "small_cnn-synthetic-random-oneshot-s0.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as a still-running worker of a killed bench would
        summary = run_bench(spec)
    assert summary.names("failed") == ["small_cnn-synthetic-random-oneshot-s0"]
    assert "another process" in (summary.outcomes[0].error or "")
    assert not (spec.bench_dir / "small_cnn-synthetic-random-oneshot-s0").exists()
    assert run_bench(spec).names("ran") == ["small_cnn-synthetic-random-oneshot-s0"]  # lock released: it runs
