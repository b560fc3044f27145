"""What the per-method DPM benchmarks share: one base model per seed pruned with every zeroing policy.

``depgraph_dpm.py``, ``otov2_dpm.py`` and ``gate_decorator_dpm.py`` each define presets (a run
config as a dict) and call :func:`main` here; the runs, the table and the summary file are the same
for all three. (Larger matrices: ``decayprune bench FILE.yaml``.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from decayprune.config import load_config
from decayprune.files import write_text_atomic
from decayprune.jobs import run_prune_job

#: What the GPU presets train with: batch 128, weight decay 5e-4, AMP and channels-last.
GPU_TRAINING: dict[str, Any] = {"batch_size": 128, "weight_decay": 5e-4, "amp": True, "channels_last": True}
#: The standard CIFAR base-model schedule of the GPU presets (160 epochs, step decay at 80 and 120).
CIFAR_PRETRAIN: dict[str, Any] = {**GPU_TRAINING, "epochs": 160, "lr": 0.1, "schedule": "step", "milestones": [80, 120]}

#: The DPM table rows as shipped configs (``paper`` presets read them).
PAPER_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "paper"

Record = dict[str, Any]
#: (args, seed, policy) -> settings merged over the preset for that run (beyond name, seed, device, policy).
ExtraSettings = Callable[[argparse.Namespace, int, str], dict[str, Any]]


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` merged into a copy of ``base``, nested dicts key by key."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def paper_preset(name: str) -> dict[str, Any]:
    """``configs/paper/NAME.yaml`` as a preset (its run name dropped): the DPM table row as published."""
    import yaml

    tree = yaml.safe_load((PAPER_CONFIGS / f"{name}.yaml").read_text())
    tree.pop("name", None)
    return tree


def mean_std(values: list[float]) -> str:
    """``mean ± std`` over seeds (the value alone for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def run_policies(preset: dict[str, Any], label: str, args: argparse.Namespace, extra: ExtraSettings) -> list[Record]:
    """Every (seed, policy) prune run; the policies of one seed share its base model. Returns the records."""
    console = Console()
    records = []
    for seed in args.seeds:
        base_weights = None
        scratch = "pretrain" not in preset  # trained from scratch (OTOv2): same seeded init per policy
        for policy in args.policies:
            per_run: dict[str, Any] = {
                "name": f"{label}-{policy.replace('+', '-')}-s{seed}",
                "output_dir": str(args.output_dir),
                "finetune": {"seed": seed, "device": args.device},
                "prune": {"decay": {"policy": policy}},
            }
            if not scratch:
                per_run["pretrain"] = {"seed": seed, "device": args.device}
            tree = merge(preset, per_run)
            tree = merge(tree, extra(args, seed, policy))
            if args.data_dir:
                tree["data"]["data_dir"] = str(args.data_dir)
            if base_weights is not None:
                tree["model"] = dict(tree["model"], weights=str(base_weights))
            cfg = load_config(None, values=tree)
            console.print(f"[bold]{cfg.name}[/]")
            records.append(run_prune_job(cfg, progress=not args.no_progress, console=console, resume="auto"))
            if not scratch:
                base_weights = base_weights or cfg.run_dir / "base.safetensors"
    return records


def policy_table(records: list[Record], title: str) -> Table:
    """One row per (method, policy): MACs %, params %, base and final top-1, Δ, releases (mean ± std)."""
    out = Table(title=title)
    for col in ("method", "policy", "MACs %", "params %", "base top-1", "top-1", "Δ top-1", "releases", "seeds"):
        out.add_column(col)
    for method, policy in dict.fromkeys((r["method"], r["policy"]) for r in records):
        rows = [r for r in records if r["method"] == method and r["policy"] == policy]
        out.add_row(
            method,
            policy,
            mean_std([r["macs_pct"] for r in rows]),
            mean_std([r["params_pct"] for r in rows]),
            mean_std([r["base"]["top1"] for r in rows]),
            mean_std([r["final"]["top1"] for r in rows]),
            mean_std([r["delta_top1"] for r in rows]),
            mean_std([float(r["releases"]) for r in rows]),
            str(len(rows)),
        )
    return out


def parser_for(doc: str, presets: dict[str, Any], output_dir: str) -> argparse.ArgumentParser:
    """The options every policy benchmark takes (a script adds its own)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(presets), default="cpu")
    parser.add_argument("--policies", nargs="+", default=["oneshot", "sp", "sp+sr"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output-dir", type=Path, default=Path(output_dir))
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(args: argparse.Namespace, presets: dict[str, Any], label: str, extra: ExtraSettings) -> list[Record]:
    """Run, print the table (titled with the wall time) and write ``<output-dir>/<label>-summary.json``."""
    preset = presets[args.preset]
    start = time.perf_counter()
    records = run_policies(preset, f"{label}-{args.preset}", args, extra)
    title = (
        f"{records[0]['method']} on {preset['model']['name']} / {preset['data']['name']} "
        f"(preset {args.preset}, target {records[0]['target_macs_fraction']:.0%} MACs, "
        f"{time.perf_counter() - start:.0f} s)"
    )
    Console().print(policy_table(records, title))
    write_text_atomic(args.output_dir / f"{label}-{args.preset}-summary.json", json.dumps(records, indent=1))
    return records
