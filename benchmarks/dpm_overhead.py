"""Cost of one training step with DPM (sp+sr) active, against the same step without pruning.

Usage:
    python benchmarks/dpm_overhead.py [--model resnet56] [--batch-size 128] [--steps 10] [--device cpu]

Both variants run the same model, batch and optimizer (SGD, momentum 0.9); the pruned
variant has 30% of the structures decaying (policy sp+sr, N larger than the run, so every
measured step pays for the norms, self-rectifying statistics, rescale and keep-at-zero)
and 10% already pruned (held at zero). Steps alternate between the two variants so that
machine noise hits both alike; the table reports medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from decayprune import DecaySettings, Pruner, PruneSettings, create_model


def _step(model, opt, x, y, pruner=None, sync=lambda: None) -> float:
    sync()
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if pruner is not None:
        pruner.after_backward()
    opt.step()
    if pruner is not None:
        pruner.after_step()
    sync()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)

    plain = create_model(args.model).to(device)
    pruned = create_model(args.model)
    pruned.load_state_dict(plain.state_dict())
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    total = args.warmup + args.steps
    settings = PruneSettings(method="depgraph", target_macs_fraction=0.5, iterative_steps=1, start_epoch=10**6,
                             decay=DecaySettings(policy="sp+sr", steps=10 * total))
    pruner = Pruner(pruned, torch.randn(1, 3, 32, 32), settings, total_steps=10**7)
    pruned.to(device)
    opt_pruned = torch.optim.SGD(pruned.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    pruner.bind(opt_pruned)
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(pruner.structures.num_structures, generator=gen)
    n = pruner.structures.num_structures
    pruner.structures.set_pruned(order[: n // 10])
    pruner.engine.start(order[n // 10 : n // 10 + (3 * n) // 10], step=0)

    times = {"plain": [], "sp+sr": []}
    for i in range(total):
        a = _step(plain, opt_plain, x, y, sync=sync)
        b = _step(pruned, opt_pruned, x, y, pruner, sync=sync)
        if i >= args.warmup:
            times["plain"].append(a)
            times["sp+sr"].append(b)
    base = statistics.median(times["plain"])
    table = Table(title=f"one training step, {args.model}, batch {args.batch_size}, {device.type}")
    for col in ("variant", "median ms", "min ms", "ratio"):
        table.add_column(col)
    for name, vals in times.items():
        med = statistics.median(vals)
        table.add_row(name, f"{1000 * med:.1f}", f"{1000 * min(vals):.1f}", f"{med / base:.3f}x")
    Console().print(table)
    Console().print(f"decaying structures: {int(pruner.engine.active.sum())} of {n}; "
                    f"threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
