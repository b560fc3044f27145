"""``decayprune prune``: prune a model with a base method and a zeroing policy (oneshot, sp, sp+sr)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError
from ..jobs import run_prune_job
from ..measure import format_count
from ..train.distributed import distributed_session, launched_rank
from .common import (
    Command,
    add_progress_option,
    add_resume_options,
    add_run_options,
    add_threads_option,
    apply_threads,
    make_console,
    resolve_run_config,
    show_progress,
)

METRICS = ("top-1 (%)", "MACs / image", "params", "CPU latency, batch 1 (ms, median ± IQR)")


def cells(snapshot: dict[str, Any]) -> list[str]:
    """Top-1, MACs, params and latency of one model, formatted.

    Example:
        >>> cells({"top1": 91.5, "macs": 2_000_000, "params": 30_000, "latency_ms": 0.25, "latency_iqr_ms": 0.01})
        ['91.50', '2.00M', '30.0K', '0.250 ± 0.010']
    """
    return [
        f"{snapshot['top1']:.2f}",
        format_count(snapshot["macs"]),
        format_count(snapshot["params"]),
        f"{snapshot['latency_ms']:.3f} ± {snapshot.get('latency_iqr_ms', 0.0):.3f}",
    ]


def pruned_cells(record: dict[str, Any]) -> list[str]:
    """:func:`cells` of the pruned model, with the change against its base."""
    top1, macs, params, latency = cells(record["final"])
    return [
        f"{top1} ({record['delta_top1']:+.2f})",
        f"{macs} ({record['macs_pct']:.1f}%)",
        f"{params} ({record['params_pct']:.1f}%)",
        latency,
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Run options, ``--resume``, ``--overwrite``, ``--no-progress``."""
    add_run_options(parser)
    add_resume_options(parser)
    add_progress_option(parser)
    add_threads_option(parser)
    parser.add_argument(
        "--no-report", action="store_true", help="do not write the run's report (RUN/report/: curves, channels, HTML)."
    )


def run(args: argparse.Namespace) -> int:
    """Run the prune job and print base vs pruned."""
    with apply_threads(args):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    console = make_console()
    cfg = resolve_run_config(args)
    if cfg.prune is None:
        raise ConfigError(["prune: the config has no 'prune' section; see configs/prune_digits.yaml for an example"])
    with distributed_session(cfg.finetune.device):  # joins the group under torchrun; no-op otherwise
        record = run_prune_job(
            cfg, resume=args.resume, overwrite=args.overwrite, progress=show_progress(args, console), console=console
        )
    if launched_rank() != 0:
        return 0  # rank 0 prints the table and writes the report
    table = Table(title=f"{cfg.name}: {record['method']} + {record['policy']} on {cfg.model.name}/{cfg.data.name}")
    for col in ("metric", "base", "pruned"):
        table.add_column(col)
    for row in zip(METRICS, cells(record["base"]), pruned_cells(record), strict=True):
        table.add_row(*row)
    console.print(table)
    if "sparsity" in record:  # a method that masks single weights: no compaction, shapes unchanged
        console.print(f"sparsity: {record['sparsity']:.1%} of the masked weights at zero (masked.safetensors)")
    console.print(f"releases: {record['releases']}; results in {escape(str(cfg.run_dir))}")
    if not getattr(args, "no_report", False):
        from ..report import build_report

        page = build_report(cfg.run_dir)[-1]
        console.print(f"report: {escape(str(page))}")
    return 0


COMMAND = Command(
    name="prune",
    help="prune a model with a base method and a zeroing policy (oneshot, sp, sp+sr)",
    description="Prune as the config's 'prune' section says: optional pretraining ('pretrain'), optional sparse "
    "learning with the method's regulariser ('sparse_learning', e.g. DepGraph's protocol), then the pruning "
    "run ('finetune': selections, DPM decay, fine-tuning), compaction, and a report. The DPM paper's table rows "
    "ship as configs/paper/*.yaml (run with --data-dir CIFAR_FOLDER). The run folder receives "
    "config.yaml, base.safetensors + base.json, prune/metrics.jsonl, prune/dpm_events.jsonl (every start, release "
    "and completed decay), pruned.safetensors + pruned.json (the compacted model, no pickle; use it with "
    "eval/measure/export --run), result.json and report/ (training curves, channels kept, report.html; "
    "--no-report skips it). Several processes: torchrun --nproc_per_node=K -m decayprune prune --config X.yaml "
    "(DistributedDataParallel, finetune.batch_size per process, gloo on the CPU, NCCL on GPUs; rank 0 writes "
    "and prints). Methods that mask single weights (magnitude_elements, snip_elements; prune.target_sparsity, "
    "see configs/prune_digits_sparse.yaml) are not compacted: they write masked.safetensors (dense weights + "
    "masks) instead of pruned.safetensors.",
    add_arguments=add_arguments,
    run=run,
)
