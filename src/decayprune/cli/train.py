"""``decayprune train``: train a model from a config (defaults: digits + small_cnn)."""

from __future__ import annotations

import argparse

from rich.markup import escape

from ..jobs import run_train_job
from ..measure import format_count
from .common import (
    Command,
    add_progress_option,
    add_resume_options,
    add_run_options,
    add_threads_option,
    apply_threads,
    make_console,
    metric_table,
    percent,
    resolve_run_config,
    show_progress,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--set``, run folder options, ``--resume``, ``--overwrite``, ``--no-progress``."""
    add_run_options(parser)
    add_resume_options(parser)
    add_progress_option(parser)
    add_threads_option(parser)


def run(args: argparse.Namespace) -> int:
    """Train, print a table, return 0."""
    with apply_threads(args):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    console = make_console()
    cfg = resolve_run_config(args)
    record = run_train_job(
        cfg, resume=args.resume, overwrite=args.overwrite, progress=show_progress(args, console), console=console
    )
    console.print(
        metric_table(
            f"{cfg.name}: {cfg.model.name} on {cfg.data.name}",
            [
                ("top-1", percent(record["top1"])),
                ("top-5", percent(record["top5"])),
                ("test loss", f"{record['test_loss']:.4f}"),
                ("MACs", format_count(record["macs"])),
                ("params", format_count(record["params"])),
                ("epochs", str(record["epochs"])),
                ("wall time", f"{record['wall_time_s']:.1f} s"),
            ],
        )
    )
    console.print(f"results written to {escape(str(cfg.run_dir))}")
    return 0


COMMAND = Command(
    name="train",
    help="train a model from a config (defaults: digits + small_cnn)",
    description="Train a model from a config. The run folder OUTPUT_DIR/NAME receives config.yaml (the resolved "
    "config), metrics.jsonl (one line per epoch), checkpoint/ (for --resume), model.safetensors + model.json "
    "(final weights and their spec) and result.json (top-1/top-5, MACs, params, wall time).",
    add_arguments=add_arguments,
    run=run,
)
