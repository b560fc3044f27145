"""``decayprune report DIR``: rebuild the table, plots and HTML report of a run folder or a bench folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from .common import EXIT_OK, Command, make_console


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``DIR``."""
    parser.add_argument("folder", type=Path, metavar="DIR", help="a run folder or a bench folder (runs/<bench>).")


def run(args: argparse.Namespace) -> int:
    """Write the report and list the files."""
    from ..report import build_report

    console = make_console()
    for path in build_report(args.folder):
        console.print(f"wrote {escape(str(path))}")
    return EXIT_OK


COMMAND = Command(
    name="report",
    help="rebuild the table, plots and HTML report of a run or bench folder",
    description="Read the result files of a run folder (result.json, prune/metrics.jsonl, prune/dpm_events.jsonl, "
    "pruned.json) or of every cell of a bench folder, and write DIR/report/: for a bench table.md, table.csv, "
    "accuracy_vs_macs.png and report.html; for a run curves.png, channels.png and report.html. The HTML page is "
    "self-contained (images inline).",
    add_arguments=add_arguments,
    run=run,
)
