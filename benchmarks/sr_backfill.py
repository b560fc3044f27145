"""Self-rectifying and FLOPs: today's backfill to the MACs budget against a one-for-one replacement.

Usage:
    python benchmarks/sr_backfill.py                 # DepGraph, small_cnn / digits at 30% of the MACs, 3 seeds
    python benchmarks/sr_backfill.py --seeds 0 1 2 3 4

The DPM paper's tables show SR lowering FLOPs below what SP reaches. With ``backfill: budget``
(the default) every release is refilled to the MACs target, so SR can only ever end at the target.
With ``backfill: count`` a released group is replaced by one next-best group, whatever its MACs, so
the run may end below (or above) the target. Every seed trains one base model that all variants
prune (same weights, same data order). Two SR settings: the defaults (t_len 1.5, window 8) and a
looser one (t_len 1.0, window 4) that releases more. Prints a markdown table: MACs and params of
the compacted model (% of the base), top-1, releases per run; mean over seeds (± std).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from decayprune.config import load_config
from decayprune.jobs import run_prune_job

BASE: dict[str, Any] = {
    "data": {"name": "digits"},
    "model": {"name": "small_cnn"},
    "pretrain": {"epochs": 12, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "device": "cpu"},
    "finetune": {"epochs": 8, "batch_size": 64, "lr": 0.01, "schedule": "cosine", "device": "cpu"},
    "prune": {"method": "depgraph", "target_macs_fraction": 0.3, "iterative_steps": 3},
}
VARIANTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("sp", {"policy": "sp", "steps": 20}, {}),
    ("sp+sr defaults, backfill budget", {"policy": "sp+sr", "steps": 20, "cooldown": 50}, {"backfill": "budget"}),
    ("sp+sr defaults, backfill count", {"policy": "sp+sr", "steps": 20, "cooldown": 50}, {"backfill": "count"}),
    (
        "sp+sr loose, backfill budget",
        {"policy": "sp+sr", "steps": 20, "cooldown": 50, "t_len": 1.0, "window": 4},
        {"backfill": "budget"},
    ),
    (
        "sp+sr loose, backfill count",
        {"policy": "sp+sr", "steps": 20, "cooldown": 50, "t_len": 1.0, "window": 4},
        {"backfill": "count"},
    ),
]


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out-dir", type=Path, default=Path("runs/bench-sr-backfill"))
    args = parser.parse_args(argv)
    quiet = Console(quiet=True)
    rows: dict[str, dict[str, list[float]]] = {name: {} for name, _d, _o in VARIANTS}
    started = time.perf_counter()
    for seed in args.seeds:
        base_weights = None
        for name, decay, options in VARIANTS:
            values = {
                **BASE,
                "name": f"s{seed}-{name.replace(' ', '-').replace(',', '').replace('+', '')}",
                "output_dir": str(args.out_dir),
                "pretrain": {**BASE["pretrain"], "seed": seed},
                "finetune": {**BASE["finetune"], "seed": seed},
                "prune": {**BASE["prune"], "decay": decay, "method_options": options},
            }
            if base_weights is not None:
                values["model"] = {**BASE["model"], "weights": str(base_weights)}
                del values["pretrain"]
            record = run_prune_job(load_config(None, values=values), overwrite=True, progress=False, console=quiet)
            if base_weights is None:
                base_weights = args.out_dir / values["name"] / "base.safetensors"
            for key, value in (
                ("macs", record["macs_pct"]),
                ("params", record["params_pct"]),
                ("top1", record["final"]["top1"]),
                ("releases", float(record["releases"])),
            ):
                rows[name].setdefault(key, []).append(value)
    print(f"DepGraph, small_cnn / digits, 30% MACs target, seeds {args.seeds}, {time.perf_counter() - started:.0f} s")
    print("\n| variant | MACs % | params % | top-1 | releases |\n|---|---|---|---|---|")
    for name, cols in rows.items():
        cells = " | ".join(_cell(cols[k]) for k in ("macs", "params", "top1", "releases"))
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
