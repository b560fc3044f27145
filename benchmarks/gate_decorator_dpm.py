"""Paper-style table: Gate Decorator, + SP, + SP + SR (mean +- std over seeds).

Usage:
    python benchmarks/gate_decorator_dpm.py                       # CPU preset (digits, small_cnn, 3 seeds)
    python benchmarks/gate_decorator_dpm.py --preset gpu --data-dir /path/to/cifar-10-batches-py
    python benchmarks/gate_decorator_dpm.py --seeds 0 --policies oneshot sp
    python benchmarks/gate_decorator_dpm.py --policies sp+sr --t-rate 0.01 --t-len 1.0   # SR thresholds

Every seed trains one base model that all policies prune (same weights, same data order), so the
rows differ only by the zeroing policy. MACs and params are % of the base model, measured on the
compacted model. ``releases`` counts self-rectifying releases (each backfilled by the next-best
gate scores). The ``gpu`` preset mirrors the paper's VGG16 / CIFAR-10 row (about 10% of the MACs
kept, p = 0.005, tock every 10 ticks) with a shortened schedule.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from decayprune.config import load_config
from decayprune.files import write_text_atomic
from decayprune.jobs import run_prune_job

PRESETS: dict[str, dict[str, Any]] = {
    # Aggressive budget, short schedule (DESIGN.md 8): ~7 ticks of p = 0.2 reach 5% of the MACs.
    "cpu": {
        "data": {"name": "digits"},
        "model": {"name": "small_cnn"},
        "pretrain": {"epochs": 12, "batch_size": 64, "lr": 0.05, "schedule": "cosine"},
        "finetune": {"epochs": 10, "batch_size": 64, "lr": 0.01, "schedule": "cosine"},
        "prune": {
            "method": "gate_decorator",
            "target_macs_fraction": 0.05,
            "iterative_steps": 2,
            "end_epoch": 6,
            "decay": {"steps": 10, "cooldown": 20},
            "method_options": {
                "prune_ratio": 0.2,
                "tick_steps": 5,
                "tock_every": 2,
                "tock_steps": 10,
                "sparse_lambda": 1e-3,
                "lr_min": 0.005,
                "lr_max": 0.05,
            },
        },
    },
    # The paper's VGG16 CIFAR-10 row (DESIGN.md 4-5): needs a GPU and the data.
    "gpu": {
        "data": {"name": "cifar10"},
        "model": {"name": "vgg16"},
        "pretrain": {
            "epochs": 160,
            "batch_size": 128,
            "lr": 0.1,
            "schedule": "step",
            "milestones": [80, 120],
            "weight_decay": 5e-4,
            "amp": True,
            "channels_last": True,
        },
        "finetune": {
            "epochs": 100,
            "batch_size": 128,
            "lr": 0.01,
            "schedule": "cosine",
            "weight_decay": 5e-4,
            "amp": True,
            "channels_last": True,
        },
        "prune": {
            "method": "gate_decorator",
            "target_macs_fraction": 0.0986,
            "iterative_steps": 2,
            "end_epoch": 60,
            "decay": {"steps": 200, "cooldown": 400},
            "method_options": {
                "prune_ratio": 0.005,
                "tick_steps": 40,
                "tock_every": 10,
                "tock_steps": 390,
                "sparse_lambda": 1e-3,
                "lr_min": 1e-3,
                "lr_max": 1e-2,
            },
        },
    },
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run every (seed, policy) job; returns their ``result.json`` records."""
    console = Console()
    preset = PRESETS[args.preset]
    sr = {k: v for k, v in (("t_rate", args.t_rate), ("t_len", args.t_len)) if v is not None}
    records = []
    for seed in args.seeds:
        base_weights = None
        for policy in args.policies:
            tree = _merge(
                preset,
                {
                    "name": f"gd-{args.preset}-{policy.replace('+', '-')}-s{seed}",
                    "output_dir": str(args.output_dir),
                    "finetune": {"seed": seed, "device": args.device},
                    "pretrain": {"seed": seed, "device": args.device},
                    "prune": {"decay": {"policy": policy, **sr}},
                },
            )
            if args.data_dir:
                tree["data"]["data_dir"] = str(args.data_dir)
            if base_weights is not None:
                tree["model"] = dict(tree["model"], weights=str(base_weights))
            cfg = load_config(None, values=tree)
            console.print(f"[bold]{cfg.name}[/]")
            records.append(run_prune_job(cfg, progress=not args.no_progress, console=console, resume="auto"))
            base_weights = base_weights or cfg.run_dir / "base.safetensors"
    return records


def table(records: list[dict[str, Any]], title: str) -> Table:
    """Rows per policy: MACs %, params %, base and final top-1, releases (mean ± std over seeds)."""
    out = Table(title=title)
    for col in ("policy", "MACs %", "params %", "base top-1", "top-1", "Δ top-1", "releases", "seeds"):
        out.add_column(col)
    for policy in dict.fromkeys(r["policy"] for r in records):
        rows = [r for r in records if r["policy"] == policy]
        out.add_row(
            policy,
            _mean_std([r["macs_pct"] for r in rows]),
            _mean_std([r["params_pct"] for r in rows]),
            _mean_std([r["base"]["top1"] for r in rows]),
            _mean_std([r["final"]["top1"] for r in rows]),
            _mean_std([r["delta_top1"] for r in rows]),
            _mean_std([float(r["releases"]) for r in rows]),
            str(len(rows)),
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--policies", nargs="+", default=["oneshot", "sp", "sp+sr"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/bench-gate"))
    parser.add_argument("--t-rate", type=float, default=None, help="override DPM's T_rate (default 1.0)")
    parser.add_argument("--t-len", type=float, default=None, help="override DPM's T_len (default 2.0)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    records = run(args)
    preset = PRESETS[args.preset]
    title = (
        f"gate_decorator on {preset['model']['name']} / {preset['data']['name']} "
        f"(preset {args.preset}, target {records[0]['target_macs_fraction']:.0%} MACs, "
        f"{time.perf_counter() - start:.0f} s)"
    )
    Console().print(table(records, title))
    write_text_atomic(args.output_dir / f"gate-{args.preset}-summary.json", json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
