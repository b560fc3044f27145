"""Two CPU processes with the gloo backend: DDP-wrapped model, rank-0-only files, all-reduced metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn

from decayprune.train import evaluate, read_jsonl

WORKER = textwrap.dedent(
    """
    import io, json, os, sys
    import torch, torch.distributed as dist
    from torch import nn
    from rich.console import Console
    from decayprune.train import Trainer, TrainSettings, save_safetensors_atomic, unwrap_model

    rank, world, init_file, run_dir, out_dir = int(sys.argv[1]), 2, sys.argv[2], sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world)

    class Shard:
        def __init__(self, x, y, batch, shuffle):
            self.x, self.y, self.batch, self.shuffle, self.epoch = x, y, batch, shuffle, 0
        def set_epoch(self, epoch):
            self.epoch = epoch
        def __len__(self):
            return -(-len(self.y) // (world * self.batch))
        def __iter__(self):
            g = torch.Generator().manual_seed(100 + self.epoch)
            order = torch.randperm(len(self.y), generator=g) if self.shuffle else torch.arange(len(self.y))
            mine = order[rank::world]
            for start in range(0, len(mine), self.batch):
                yield self.x[mine[start:start + self.batch]], self.y[mine[start:start + self.batch]]

    data = torch.load(sys.argv[5], weights_only=True)
    torch.manual_seed(rank)  # different init per rank: DDP must broadcast rank 0's weights
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    ddp = nn.parallel.DistributedDataParallel(model)
    buffer = io.StringIO()
    settings = TrainSettings(epochs=2, lr=0.05, device="cpu", log_every=1)
    trainer = Trainer(ddp, Shard(data["xtr"], data["ytr"], 8, True), Shard(data["xte"], data["yte"], 16, False),
                      settings, run_dir=run_dir, progress=True, console=Console(file=buffer, force_terminal=False))
    result = trainer.fit()
    save_safetensors_atomic(f"{out_dir}/rank{rank}.safetensors", unwrap_model(ddp).state_dict())
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump({"final": result.final, "history": result.history, "printed": buffer.getvalue()}, f)
    dist.destroy_process_group()
    # no interpreter teardown: gloo can abort there (see the worker of test_train_distributed.py)
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0)
    """
)


@pytest.mark.slow  # two fresh interpreters importing torch: a few seconds, more on a busy machine
@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo")
def test_two_process_gloo_training(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 6, generator=g) * 2
    labels = torch.randint(0, 3, (112,), generator=g)
    x = centres[labels] + torch.randn(112, 6, generator=g)
    data = {"xtr": x[:64], "ytr": labels[:64], "xte": x[64:], "yte": labels[64:]}
    torch.save(data, tmp_path / "data.pt")  # written by this test, read with weights_only=True
    (tmp_path / "worker.py").write_text(WORKER)
    run_dir, out_dir = tmp_path / "run", tmp_path / "out"
    out_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [str(tmp_path / "init"), str(run_dir), str(out_dir), str(tmp_path / "data.pt")]
    procs = [
        subprocess.Popen(
            [sys.executable, str(tmp_path / "worker.py"), str(rank), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outputs)

    weights = [load_file(out_dir / f"rank{r}.safetensors") for r in range(2)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    reports = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(2)]
    assert reports[0]["final"] == reports[1]["final"]
    assert reports[0]["final"]["samples"] == 48  # both shards counted
    assert reports[0]["history"] == read_jsonl(run_dir / "metrics.jsonl")
    assert len(reports[0]["history"]) == 2
    assert "epoch 2/2" in reports[0]["printed"] and reports[1]["printed"] == ""  # rank 0 only

    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    model.load_state_dict(weights[0])
    single = evaluate(model, [(data["xte"], data["yte"])])
    assert reports[0]["final"]["top1"] == pytest.approx(single["top1"])
    assert reports[0]["final"]["loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint", "metrics.jsonl"]
