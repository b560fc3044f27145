"""The ``prune`` and ``demo`` sub-commands (registered into :mod:`decayprune.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .cli import CLIError, add_run_options, register_command, resolve_run_config
from .config import RunConfig, load_config
from .experiment import run_prune_job
from .measure import format_count

DEMO_SETTINGS = {
    "data.name": "digits",
    "model.name": "small_cnn",
    "pretrain": {"epochs": 12, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4},
    "finetune": {"epochs": 8, "batch_size": 64, "lr": 0.01, "schedule": "cosine", "weight_decay": 5e-4},
}
DEMO_VARIANTS = (
    ("l1-oneshot", {"method": "l1", "target_macs_fraction": 0.5, "iterative_steps": 1, "decay": {"policy": "oneshot"}}),
    ("depgraph-sp-sr", {"method": "depgraph", "target_macs_fraction": 0.5, "iterative_steps": 3,
                        "decay": {"policy": "sp+sr", "steps": 20}}),
)


_METRICS = ("top-1 (%)", "MACs / image", "params", "CPU latency, batch 1 (ms)")


def _cells(snapshot: dict[str, Any]) -> list[str]:
    """Top-1, MACs, params and latency of one model, formatted."""
    return [f"{snapshot['top1']:.2f}", format_count(snapshot["macs"]), format_count(snapshot["params"]),
            f"{snapshot['latency_ms']:.3f}"]


def _pruned_cells(record: dict[str, Any]) -> list[str]:
    """:func:`_cells` of the pruned model, with the change against its base."""
    top1, macs, params, latency = _cells(record["final"])
    return [f"{top1} ({record['delta_top1']:+.2f})", f"{macs} ({record['macs_pct']:.1f}%)",
            f"{params} ({record['params_pct']:.1f}%)", latency]


def _prune_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted job in its run folder.")
    parser.add_argument("--no-progress", action="store_true", help="do not draw progress bars.")


@register_command(
    "prune",
    help="prune a model with a base method and a zeroing policy (oneshot, sp, sp+sr)",
    description="Prune as the config's 'prune' section says: optional pretraining ('pretrain'), then the pruning "
    "run ('train': selections, DPM decay, fine-tuning), compaction, and a report. The run folder receives "
    "config.yaml, base.safetensors, prune/metrics.jsonl, prune/dpm_events.jsonl (every start, release and "
    "completed decay), pruned.safetensors + pruned.json (the compacted model, no pickle) and result.json.",
    add_arguments=_prune_arguments,
)
def _cmd_prune(args: argparse.Namespace, console: Console) -> int:
    cfg = resolve_run_config(args)
    if cfg.prune is None:
        raise CLIError("the config has no 'prune' section; see configs/prune_digits.yaml for an example")
    record = run_prune_job(cfg, resume=args.resume, progress=not args.no_progress, console=console)
    table = Table(title=f"{cfg.name}: {record['method']} + {record['policy']} on {cfg.model.name}/{cfg.data.name}")
    for col in ("metric", "base", "pruned"):
        table.add_column(col)
    for row in zip(_METRICS, _cells(record["base"]), _pruned_cells(record)):
        table.add_row(*row)
    console.print(table)
    console.print(f"releases: {record['releases']}; results in {escape(str(cfg.run_dir))}")
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", type=Path, default=Path("runs"), help="where the demo's run folders go.")
    parser.add_argument("--no-progress", action="store_true", help="do not draw progress bars.")


def demo_configs(output_dir: Path) -> list[tuple[str, RunConfig]]:
    """The demo's jobs: one base model, pruned by each variant in :data:`DEMO_VARIANTS`."""
    configs = []
    for label, prune in DEMO_VARIANTS:
        values: dict[str, Any] = dict(DEMO_SETTINGS, prune=prune, name=f"demo-{label}", output_dir=str(output_dir))
        configs.append((label, load_config(None, values=values)))
    return configs


@register_command(
    "demo",
    help="train a small CNN on the embedded digits data and prune it to 50%% of its MACs",
    description="Trains small_cnn on scikit-learn's digits (embedded, no download), then prunes the same base "
    "model to 50%% of its MACs twice: L1-norm filter pruning in one shot (Li et al. 2017) and DepGraph with DPM "
    "(smooth pruning + self-rectifying), each followed by fine-tuning; prints accuracy, MACs, params and CPU "
    "latency before and after.",
    add_arguments=_demo_arguments,
)
def _cmd_demo(args: argparse.Namespace, console: Console) -> int:
    records = []
    base_weights: Path | None = None
    for label, cfg in demo_configs(args.output_dir):
        if base_weights is not None:
            cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"weights": base_weights})})
        console.print(f"[bold]demo[/] {label} -> {escape(str(cfg.run_dir))}")
        records.append((label, run_prune_job(cfg, progress=not args.no_progress, console=console)))
        base_weights = base_weights or cfg.run_dir / "base.safetensors"
    table = Table(title="decayprune demo: small_cnn on digits, pruned to 50% of its MACs")
    for col in ("model", *_METRICS, "releases"):
        table.add_column(col, no_wrap=col == "model")
    table.add_row("base", *_cells(records[0][1]["base"]), "-")
    for label, rec in records:
        table.add_row(label, *_pruned_cells(rec), str(rec["releases"]))
    console.print(table)
    return 0
