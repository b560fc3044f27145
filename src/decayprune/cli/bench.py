"""``decayprune bench FILE.yaml``: run a matrix of prune runs (model x dataset x method x policy x seed)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from ..bench import CellOutcome, estimate_seconds, load_bench, plan, run_bench
from .common import EXIT_OK, Command, make_console, positive_int


def _duration(seconds: float) -> str:
    """``seconds`` as ``1h02m``, ``3m05s`` or ``12s``.

    Example:
        >>> _duration(3725), _duration(185), _duration(12.4)
        ('1h02m', '3m05s', '12s')
    """
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``FILE``, ``--jobs``, ``--threads``, ``--dry-run``, ``--output-dir``, ``--no-report``."""
    parser.add_argument(
        "file", type=Path, metavar="FILE", help="bench YAML file (keys: name, output_dir, base, matrix)."
    )
    parser.add_argument("--jobs", "-j", type=positive_int, default=1, help="cells run at once, in processes.")
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="torch CPU threads per cell (default: 1 when --jobs > 1)."
    )
    parser.add_argument("--dry-run", action="store_true", help="print the matrix and a cost estimate; run nothing.")
    parser.add_argument("--output-dir", type=Path, metavar="DIR", help="replace the bench file's output_dir.")
    parser.add_argument("--no-report", action="store_true", help="do not write the table, plots and HTML report.")


def run(args: argparse.Namespace) -> int:
    """Run (or with ``--dry-run`` show) the bench, then write its report."""
    console = make_console()
    spec = load_bench(args.file, {"output_dir": str(args.output_dir)} if args.output_dir else None)
    rows = plan(spec)
    if args.dry_run:
        table = Table(title=f"bench {spec.name}: {len(rows)} cells in {spec.bench_dir}")
        for col in ("cell", "method", "policy", "seed", "base model", "state"):
            table.add_column(col)
        for row in rows:
            c = row.cell
            table.add_row(
                c.name, c.method, c.policy, str(c.seed), f"from {row.leader}" if row.leader else "own", row.state
            )
        console.print(table)
        epochs, seconds = estimate_seconds(spec, rows)
        left = sum(r.state != "finished" for r in rows)
        cost = (
            f"about {_duration(seconds)} on 1 job, {_duration(seconds / args.jobs)} on {args.jobs}"
            if seconds is not None
            else "no finished cell to time it from yet"
        )
        console.print(f"{left} cells to run, {epochs} training epochs in all: {cost}")
        return EXIT_OK
    start = time.perf_counter()
    ran: list[float] = []

    def show(outcome: CellOutcome, counts: dict[str, int]) -> None:
        ran.append(outcome.seconds)
        queued = counts["left"] - counts["failed"]
        eta = sum(ran) / len(ran) * queued / args.jobs
        mark = "[green]ok[/]" if outcome.status == "ran" else f"[red]failed[/]: {escape(outcome.error or '')}"
        console.print(
            f"[{counts['done']}/{len(rows)} done, {counts['failed']} failed, {counts['running']} running, "
            f"~{_duration(eta)} left] {escape(outcome.name)} {mark} ({_duration(outcome.seconds)})"
        )

    skipped = sum(r.state == "finished" for r in rows)
    console.print(f"bench {escape(spec.name)}: {len(rows)} cells ({skipped} finished before), {args.jobs} job(s)")
    summary = run_bench(spec, jobs=args.jobs, threads=args.threads, on_outcome=show)
    failed = summary.names("failed")
    console.print(
        f"bench {escape(spec.name)}: {len(summary.names('ran'))} ran, {len(failed)} failed, "
        f"{len(summary.names('skipped'))} skipped, in {_duration(time.perf_counter() - start)}; "
        f"cells in {escape(str(spec.bench_dir))} (logs in logs/)"
    )
    if not args.no_report:
        from ..report import build_report

        for path in build_report(spec.bench_dir):
            console.print(f"wrote {escape(str(path))}")
    return 1 if failed else EXIT_OK


COMMAND = Command(
    name="bench",
    help="run a matrix of prune runs (model x dataset x method x policy x seed) and report it",
    description="Run every cell of a bench file as an ordinary prune run in OUTPUT_DIR/NAME/CELL/. Finished cells "
    "are not run again, so an interrupted bench resumes; --jobs spreads cells over processes; --dry-run prints the "
    "matrix and a cost estimate. At the end the bench's table (Markdown, CSV), plots and HTML report are written to "
    "OUTPUT_DIR/NAME/report/ (rebuild them with `decayprune report`).",
    add_arguments=add_arguments,
    run=run,
)
