"""``decayprune sr-stats RUN``: why self-rectifying did or did not fire in a prune run.

Plots the per-step percentiles of C_rate and C_len over the decaying structures (from the run's
``sr_stats.jsonl``) with the thresholds and the releases, and prints a short summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..decay.plot import plot_sr_stats
from ..decay.stats import load_sr_stats
from ..errors import RunFolderError
from .common import Command, make_console


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run folder and the PNG to write."""
    parser.add_argument("run", type=Path, metavar="RUN", help="a prune run folder (with decay.policy sp+sr).")
    parser.add_argument(
        "--output", type=Path, default=None, metavar="PNG", help="where to write the plot (default: RUN/sr_stats.png)."
    )


def run(args: argparse.Namespace) -> int:
    """Write the plot and print the largest C_rate / C_len seen against the thresholds."""
    if not args.run.is_dir():
        raise RunFolderError(f"run folder '{args.run}' does not exist")
    records = load_sr_stats(args.run)
    out = plot_sr_stats(args.run, args.output or args.run / "sr_stats.png")
    console = make_console()
    if records:
        last = records[-1]
        rate = max(r["c_rate_max"] for r in records)
        length = max(r["c_len_max"] for r in records)
        console.print(
            f"{len(records)} read-backs ({last['criterion']} criterion, window {last['window']}): "
            f"largest C_rate {rate:.3g} (T_rate {last['t_rate']:g}), largest C_len {length:.3g} "
            f"(T_len {last['t_len']:g})",
            markup=False,
        )
    console.print(f"plot: {out}", markup=False)
    return 0


COMMAND = Command(
    "sr-stats",
    "plot a prune run's self-rectifying statistics against the thresholds",
    add_arguments,
    run,
    description=__doc__,
)
