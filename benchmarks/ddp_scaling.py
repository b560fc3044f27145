"""Steps per second of DDP training with and without DPM (sp+sr), for 1, 2, ... processes.

Usage:
    python benchmarks/ddp_scaling.py [--procs 1,2] [--devices cpu,cuda] [--model resnet20]
        [--batch-size 32] [--steps 20] [--warmup 5] [--threads 1]

Each process count K runs K processes (gloo on the CPU, NCCL on GPUs: one GPU per process, so
``cuda`` needs K GPUs) that train a DistributedDataParallel copy of the model on synthetic
CIFAR-sized batches, ``--batch-size`` per process (weak scaling: the global batch is K times it).
Two variants, interleaved by step: ``plain`` (no pruner) and ``sp+sr`` (DepGraph selects half the
MACs at the first step; the decay N is longer than the run, so every timed step pays for DPM).
The user's-loop calls (``after_backward``, ``after_step``) are the ones the Trainer makes; the
pruner checks every ``sync_every`` steps that the ranks agree on the pruning state.

The table gives, per K and variant, the median step time over ranks' slowest, steps/s, images/s
over all processes and the speed-up over K = 1. On a CPU, ``--threads`` (torch threads per process)
times K should not exceed the cores, or the processes only share them.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from decayprune import DecaySettings, Pruner, PruneSettings, create_model

VARIANTS = ("plain", "sp+sr")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(rank: int, world: int, args: argparse.Namespace, device_type: str, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(args.threads)
    device = torch.device("cuda", rank) if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    steps = args.warmup + args.steps
    runs = []
    for variant in VARIANTS:
        torch.manual_seed(0)
        model = create_model(args.model, num_classes=10)
        pruner = None
        if variant != "plain":
            settings = PruneSettings(
                method="depgraph",
                target_macs_fraction=0.5,
                iterative_steps=1,
                start_epoch=0,
                decay=DecaySettings(policy="sp+sr", steps=100 * steps),
            )
            pruner = Pruner(model, torch.zeros(1, 3, 32, 32), settings, total_steps=10**7)
        model.to(device)
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[rank] if device.type == "cuda" else None)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        if pruner is not None:
            pruner.bind(opt)
        runs.append((variant, ddp, opt, pruner))
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(args.batch_size, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (args.batch_size,), generator=g).to(device)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for i in range(steps):
        for variant, ddp, opt, pruner in runs:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dist.barrier()
            t0 = time.perf_counter()
            loss = F.cross_entropy(ddp(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if pruner is not None:
                pruner.after_backward()
            opt.step()
            if pruner is not None:
                pruner.after_step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)  # a step lasts as long as its slowest rank
            if i >= args.warmup:
                times[variant].append(float(elapsed))
    if rank == 0:
        lines = [f"{v} {' '.join(str(t) for t in times[v])}" for v in VARIANTS]
        Path(out).write_text("\n".join(lines) + "\n")
    dist.destroy_process_group()


def measure(world: int, device_type: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Per-step times (s) of each variant with ``world`` processes."""
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "times.txt")
        mp.spawn(_worker, args=(world, args, device_type, _free_port(), out), nprocs=world, join=True)
        result = {}
        for line in Path(out).read_text().splitlines():
            name, *values = line.split()
            result[name] = [float(v) for v in values]
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", default="1,2", help="process counts, comma-separated")
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.device_count() >= 1 else "cpu")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (the selection is at step 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args(argv)
    console = Console(width=150)
    for device_type in args.devices.split(","):
        counts = [int(k) for k in args.procs.split(",")]
        if device_type == "cuda":
            counts = [k for k in counts if k <= torch.cuda.device_count()]
        table = Table(
            title=f"DDP training step: {args.model}, batch {args.batch_size} per process, 32x32, {device_type}, "
            f"{args.steps} timed steps (median), {args.threads} thread(s) per process"
        )
        for col in ("processes", "variant", "median ms", "steps/s", "images/s", "speed-up", "sp+sr / plain"):
            table.add_column(col, justify="left" if col == "variant" else "right")
        single: dict[str, float] = {}
        for world in counts:
            times = measure(world, device_type, args)
            plain = statistics.median(times["plain"])
            for variant in VARIANTS:
                med = statistics.median(times[variant])
                rate = world * args.batch_size / med
                single.setdefault(variant, rate)
                table.add_row(
                    str(world),
                    variant,
                    f"{1000 * med:.1f}",
                    f"{1 / med:.2f}",
                    f"{rate:,.0f}",
                    f"{rate / single[variant]:.2f}x",
                    f"{med / plain:.3f}x" if variant != "plain" else "-",
                )
        console.print(table)


if __name__ == "__main__":
    main()
