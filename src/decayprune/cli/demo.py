"""``decayprune demo``: one base model, one base method, three zeroing policies, one table.

Trains small_cnn on the embedded digits data once, then prunes that same base model with DepGraph
to 50% of its MACs under each policy: ``oneshot`` (zero at selection, the method as published),
``sp`` (DPM smooth pruning) and ``sp+sr`` (with self-rectifying); each run fine-tunes as long.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from ..config import RunConfig, load_config
from ..jobs import run_prune_job
from .common import Command, add_progress_option, add_threads_option, apply_threads, make_console, show_progress
from .prune import METRICS, cells, pruned_cells

DEMO_SETTINGS: dict[str, Any] = {
    "data.name": "digits",
    "model.name": "small_cnn",
    "pretrain": {"epochs": 12, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4},
    "finetune": {"epochs": 6, "batch_size": 64, "lr": 0.01, "schedule": "cosine", "weight_decay": 5e-4},
}
#: Only what a user must write: the method and the budget (the schedule, N and SR are the defaults).
DEMO_PRUNE: dict[str, Any] = {"method": "depgraph", "target_macs_fraction": 0.5}
#: (label, decay settings): the same method and budget under each zeroing policy.
DEMO_POLICIES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("oneshot", {"policy": "oneshot"}),
    ("sp", {"policy": "sp"}),
    ("sp+sr", {"policy": "sp+sr"}),
)


def demo_configs(output_dir: Path) -> list[tuple[str, RunConfig]]:
    """The demo's jobs: one per policy in :data:`DEMO_POLICIES`, same method, budget and training.

    Example:
        >>> [label for label, _ in demo_configs(Path("runs"))]
        ['oneshot', 'sp', 'sp+sr']
    """
    configs = []
    for label, decay in DEMO_POLICIES:
        values: dict[str, Any] = dict(
            DEMO_SETTINGS,
            prune={**DEMO_PRUNE, "decay": decay},
            name=f"demo-depgraph-{label.replace('+', '-')}",
            output_dir=str(output_dir),
        )
        configs.append((label, load_config(None, values=values)))
    return configs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--output-dir``, ``--no-progress``."""
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runs"),
        help="where the demo's run folders go (default: runs; earlier demo runs there are replaced).",
    )
    add_progress_option(parser)
    add_threads_option(parser, default=1)  # a tiny model: one thread is fastest, more oversubscribe


def run(args: argparse.Namespace) -> int:
    """Run the three jobs on one base model and print the comparison."""
    with apply_threads(args):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    console = make_console()
    records = []
    base_weights: Path | None = None
    for label, cfg in demo_configs(args.output_dir):
        if base_weights is not None:  # reuse the first job's base model: one pretraining for all
            cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"weights": base_weights})})
        console.print(f"[bold]demo: depgraph + {escape(label)}[/] -> {escape(str(cfg.run_dir))}")
        records.append(
            (label, run_prune_job(cfg, overwrite=True, progress=show_progress(args, console), console=console))
        )
        base_weights = base_weights or cfg.run_dir / "base.safetensors"
    table = Table(title="decayprune demo: small_cnn on digits, DepGraph to 50% of the MACs under each policy")
    for col in ("model", *METRICS, "SR releases"):
        table.add_column(col, no_wrap=col == "model")
    table.add_row("base", *cells(records[0][1]["base"]), "-")
    for label, rec in records:
        releases = str(rec["releases"]) if rec["policy"] == "sp+sr" else "-"
        table.add_row(f"depgraph {label}", *pruned_cells(rec), releases)
    console.print(table)
    return 0


COMMAND = Command(
    name="demo",
    help="train a small CNN on the embedded digits data; prune it with DepGraph under oneshot, sp and sp+sr",
    description="Trains small_cnn on scikit-learn's digits (embedded, no download) once, then prunes that base "
    "model to 50%% of its MACs with DepGraph under each zeroing policy: oneshot, sp (DPM smooth pruning) and "
    "sp+sr (with self-rectifying), each with the same fine-tuning; prints accuracy, MACs, params and CPU latency.",
    add_arguments=add_arguments,
    run=run,
)
