"""Paper-style table: DepGraph, DepGraph + SP, DepGraph + SP + SR (mean +- std over seeds).

Usage:
    python benchmarks/depgraph_dpm.py                      # CPU preset (digits, small_cnn, 3 seeds)
    python benchmarks/depgraph_dpm.py --preset fashion     # Fashion-MNIST (Debian dataset-fashion-mnist)
    python benchmarks/depgraph_dpm.py --preset gpu --data-dir /path/to/cifar-10-batches-py
    python benchmarks/depgraph_dpm.py --seeds 0 1 --policies oneshot sp+sr --method l1

Every seed trains one base model that all policies prune (same weights, same data order), so
the columns differ only by the zeroing policy. MACs and params are % of the base model,
measured on the compacted model; top-1 deltas are against the base of the same seed.
Each run's folder (result.json, dpm_events.jsonl, metrics) is kept under --output-dir.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from decayprune.config import load_config
from decayprune.jobs import run_prune_job

PRESETS: dict[str, dict[str, Any]] = {
    # Aggressive budget and short fine-tuning so that differences between policies can show (DESIGN.md 8).
    "cpu": {
        "data": {"name": "digits"},
        "model": {"name": "small_cnn"},
        "pretrain": {"epochs": 12, "batch_size": 64, "lr": 0.05, "schedule": "cosine"},
        "finetune": {"epochs": 6, "batch_size": 64, "lr": 0.01, "schedule": "cosine"},
        "prune": {"target_macs_fraction": 0.2, "iterative_steps": 3, "decay": {"steps": 20, "cooldown": 40}},
    },
    "fashion": {
        "data": {"name": "fashion-mnist", "train_subset": 20000},
        "model": {"name": "small_cnn"},
        "pretrain": {"epochs": 3, "batch_size": 128, "lr": 0.05, "schedule": "cosine"},
        "finetune": {"epochs": 2, "batch_size": 128, "lr": 0.01, "schedule": "cosine"},
        "prune": {"target_macs_fraction": 0.2, "iterative_steps": 3, "decay": {"steps": 50, "cooldown": 100}},
    },
    # The DepGraph CIFAR-10 ResNet-56 protocol (DESIGN.md 5), shortened pruning schedule: needs a GPU and the data.
    "gpu": {
        "data": {"name": "cifar10"},
        "model": {"name": "resnet56"},
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
            "schedule": "step",
            "milestones": [60, 80],
            "weight_decay": 5e-4,
            "amp": True,
            "channels_last": True,
        },
        "prune": {"speed_up": 2.11, "iterative_steps": 20, "end_epoch": 40, "decay": {"steps": 400, "cooldown": 1000}},
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
    console = Console()
    preset = PRESETS[args.preset]
    records = []
    for seed in args.seeds:
        base_weights = None
        for policy in args.policies:
            tree = _merge(
                preset,
                {
                    "name": f"{args.preset}-{args.method}-{policy.replace('+', '-')}-s{seed}",
                    "output_dir": str(args.output_dir),
                    "finetune": {"seed": seed, "device": args.device},
                    "pretrain": {"seed": seed, "device": args.device},
                    "prune": {"method": args.method, "decay": {"policy": policy}},
                },
            )
            if args.data_dir:
                tree["data"]["data_dir"] = str(args.data_dir)
            if base_weights is not None:
                tree["model"] = dict(tree["model"], weights=str(base_weights))
            cfg = load_config(None, values=tree)
            console.print(f"[bold]{cfg.name}[/]")
            record = run_prune_job(cfg, progress=not args.no_progress, console=console, resume="auto")
            records.append(record)
            base_weights = base_weights or cfg.run_dir / "base.safetensors"
    return records


def table(records: list[dict[str, Any]], title: str) -> Table:
    out = Table(title=title)
    for col in ("method", "policy", "MACs %", "params %", "base top-1", "top-1", "Δ top-1", "releases", "seeds"):
        out.add_column(col)
    for policy in dict.fromkeys(r["policy"] for r in records):
        rows = [r for r in records if r["policy"] == policy]
        out.add_row(
            rows[0]["method"],
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
    parser.add_argument("--method", default="depgraph")
    parser.add_argument("--policies", nargs="+", default=["oneshot", "sp", "sp+sr"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/bench"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    records = run(args)
    preset = PRESETS[args.preset]
    title = (
        f"{args.method} on {preset['model']['name']} / {preset['data']['name']} "
        f"(preset {args.preset}, target {records[0]['target_macs_fraction']:.0%} MACs)"
    )
    Console().print(table(records, title))
    summary = args.output_dir / f"{args.preset}-{args.method}-summary.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
