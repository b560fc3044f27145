"""``torchrun --nproc_per_node=2 -m decayprune prune`` with gloo on the CPU prunes exactly like one
process with the same global batch: the same selections, releases and completions at every step,
the same pruned architecture, the same final weights (1e-6); only rank 0 writes files and prints.
A resume of the finished run under torchrun reproduces its result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from decayprune.cli import main

# A model without batch norm: per-rank batch statistics would differ from the global batch's.
CONFIG = """\
name: ddp
output_dir: runs
data: {name: digits, train_subset: 256, test_subset: 64}
model: {name: mlp, width: 0.25}
pretrain: {epochs: 1, batch_size: 64, lr: 0.05, device: cpu}
finetune: {epochs: 3, batch_size: 64, lr: 0.05, device: cpu}
prune:
  method: depgraph
  target_macs_fraction: 0.5
  iterative_steps: 2
  decay: {policy: sp+sr, steps: 4, t_rate: -1.0, t_len: 0.5, window: 1, cooldown: 2}
"""
HALF_BATCH = ["--set", "pretrain.batch_size=32", "--set", "finetune.batch_size=32"]
FLAGS = ["--no-report", "--no-progress", "--threads", "1"]
# Each rank runs in a folder of its own (a relative output_dir), so whatever rank 1 wrote would show.
PER_RANK = 'cd "$1/rank$RANK" && shift && exec "$@" > out.txt 2> err.txt'


def torchrun(args: list[str], cwd: Path, *, per_rank_dirs: bool) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "decayprune", "prune", *args]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    if per_rank_dirs:
        launcher += ["--no-python", "sh", "-c", PER_RANK, "sh", str(cwd), *command]
    else:
        launcher += ["-m", *command[2:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(launcher, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def _events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "prune" / "dpm_events.jsonl").read_text().splitlines()]


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def _assert_same_pruning(one: Path, two: Path) -> None:
    a, b = _events(one), _events(two)
    key = lambda e: (e["kind"], e["step"], e["structure"], e["layer"])  # noqa: E731
    assert [key(e) for e in a] == [key(e) for e in b]
    assert sum(e["kind"] == "release" for e in a) > 0, "no release: the test would not cover self-rectifying"
    for x, y in zip(a, b, strict=True):
        for stat in ("c_rate", "c_len"):
            if stat in x:
                assert y[stat] == pytest.approx(x[stat], rel=1e-4, abs=1e-6)
    assert json.loads((one / "pruned.json").read_text()) == json.loads((two / "pruned.json").read_text())
    wa, wb = load_file(one / "pruned.safetensors"), load_file(two / "pruned.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], rtol=0, atol=1e-6), name
    ra, rb = (json.loads((run / "result.json").read_text()) for run in (one, two))
    for field in ("releases", "pruned_structures", "macs_pct", "params_pct"):
        assert ra[field] == rb[field], field
    assert ra["final"]["top1"] == rb["final"]["top1"]


@pytest.mark.slow  # three launches of fresh interpreters (one torchrun of two ranks, twice)
@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo")
def test_two_gloo_processes_prune_like_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(CONFIG)
    assert main(["prune", "--config", str(config), "--output-dir", str(tmp_path / "one"), *FLAGS]) == 0
    one = tmp_path / "one" / "ddp"

    for rank in (0, 1):
        (tmp_path / f"rank{rank}").mkdir()
    proc = torchrun(["--config", str(config), *HALF_BATCH, *FLAGS], tmp_path, per_rank_dirs=True)
    logs = {r: (tmp_path / f"rank{r}" / "out.txt").read_text() for r in (0, 1)}
    assert proc.returncode == 0, proc.stdout + proc.stderr + logs[0] + (tmp_path / "rank0" / "err.txt").read_text()
    two = tmp_path / "rank0" / "runs" / "ddp"
    assert "phase 3/3: compaction" in logs[0] and "releases:" in logs[0]
    assert logs[1] == "" and (tmp_path / "rank1" / "err.txt").read_text() == ""  # rank 1 printed nothing
    assert sorted(p.name for p in (tmp_path / "rank1").iterdir()) == ["err.txt", "out.txt"]  # and wrote nothing
    assert _files(two) == _files(one)
    assert len((two / "prune" / "metrics.jsonl").read_text().splitlines()) == 3
    _assert_same_pruning(one, two)

    # Resume (the run folder on a file system both ranks see): the finished run's checkpoint is
    # restored on every rank and compacted again to the same model.
    shared = tmp_path / "shared"
    shutil.copytree(tmp_path / "rank0" / "runs", shared / "runs")
    proc = torchrun(["--config", str(config), *HALF_BATCH, *FLAGS, "--resume"], shared, per_rank_dirs=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("phase 3/3: compaction") == 1  # printed by rank 0 alone
    _assert_same_pruning(one, shared / "runs" / "ddp")
