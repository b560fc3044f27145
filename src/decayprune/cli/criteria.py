"""``decayprune criteria``: the registered pruning criteria, what each needs and its options."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from ..criteria.catalog import criteria_table
from .common import Command, make_console


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--json``."""
    parser.add_argument("--json", action="store_true", help="print the catalog as JSON (with option descriptions).")


def run(args: argparse.Namespace) -> int:
    """Print one row per criterion: name, needs, summary, paper, options with defaults."""
    rows = criteria_table()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    table = Table(title="criteria (prune.criterion, options under prune.criterion_options)")
    for column in ("name", "needs", "scores", "paper", "options (default)"):
        table.add_column(column, overflow="fold")
    for row in rows:
        options = ", ".join(f"{key}={spec['default']!r}" for key, spec in row["options"].items())
        table.add_row(row["name"], ", ".join(row["needs"]) or "weights", row["summary"], row["paper"], options or "-")
    make_console().print(table)
    return 0


COMMAND = Command("criteria", "list the pruning criteria, what each needs and its options", add_arguments, run)
