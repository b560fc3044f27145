"""Run a bench: each cell is an ordinary prune run in ``<output_dir>/<bench>/<cell>/``.

A cell whose ``result.json`` says ``ok`` (and whose saved config equals the cell's config) is
finished and not run again, so an interrupted bench resumes where it stopped (a cell that was
cut off mid-way continues from its last checkpoint). ``jobs > 1`` spreads cells over that many
worker processes (spawned, one torch thread each unless told otherwise). With ``share_base``,
the first cell of each model/dataset/seed trains the base model and the others of the group start
from its ``base.safetensors`` once it is written. Each cell's console output goes to
``<bench>/logs/<cell>.log``; ``<bench>/bench.json`` holds every cell's status as the bench goes. A
cell is locked (``logs/<cell>.lock``) while it runs, so a worker of a killed bench that is still
finishing its cell and a resumed bench never write one run folder at once.

Example:
    >>> from decayprune.bench.spec import BenchSpec
    >>> spec = BenchSpec.model_validate({"name": "doc", "base": {"prune": {"speed_up": 2}}})
    >>> [row.state for row in plan(spec)]
    ['to run', 'to run', 'to run']
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import load_config
from ..errors import ConfigError, RunFolderError
from ..files import write_json_atomic
from .spec import BenchSpec, Cell, cell_config, expand

__all__ = ["BenchSummary", "CellOutcome", "PlannedCell", "estimate_seconds", "plan", "run_bench"]

RESULT_FILE = "result.json"


@dataclass(frozen=True)
class PlannedCell:
    """A cell, the base model it starts from (None: it pretrains its own) and its state on disk."""

    cell: Cell
    base_weights: Path | None
    leader: str | None  # the cell that trains ``base_weights``
    state: str  # "finished", "partial" (started, no result) or "to run"


@dataclass(frozen=True)
class CellOutcome:
    """What happened to one cell in this invocation."""

    name: str
    status: str  # "ran", "skipped" (finished before) or "failed"
    seconds: float = 0.0
    error: str | None = None


@dataclass
class BenchSummary:
    """All outcomes of one :func:`run_bench` call, in the order cells ended."""

    outcomes: list[CellOutcome] = field(default_factory=list)

    def names(self, status: str) -> list[str]:
        """Names of the cells with this status."""
        return [o.name for o in self.outcomes if o.status == status]


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _shares_base(spec: BenchSpec) -> bool:
    model = spec.base.get("model") or {}
    return spec.share_base and spec.base.get("pretrain") is not None and not model.get("weights")


def plan(spec: BenchSpec) -> list[PlannedCell]:
    """Every cell in run order with its base model and its state on disk."""
    leaders: dict[tuple[str, str, int], Cell] = {}
    rows = []
    for cell in expand(spec):
        leader = leaders.setdefault(cell.base_group, cell) if _shares_base(spec) else cell
        weights = None if leader is cell else spec.bench_dir / leader.name / "base.safetensors"
        rows.append(PlannedCell(cell, weights, None if leader is cell else leader.name, _state(spec, cell)))
    return rows


def _state(spec: BenchSpec, cell: Cell) -> str:
    run_dir = spec.bench_dir / cell.name
    result = _read_json(run_dir / RESULT_FILE)
    if result is not None and result.get("status") == "ok" and (run_dir / "config.yaml").is_file():
        return "finished"
    return "partial" if (run_dir / "config.yaml").is_file() else "to run"


def _check_finished(spec: BenchSpec, row: PlannedCell) -> None:
    """A finished cell must have been run with this bench's settings for that cell."""
    from ..jobs.rundir import changed_keys

    run_dir = spec.bench_dir / row.cell.name
    saved = load_config(run_dir / "config.yaml")
    # model.weights differs by design: a follower cell starts from its leader's base model
    changed = [k for k in changed_keys(saved, cell_config(spec, row.cell)) if k != "model.weights"]
    if changed:
        raise RunFolderError(
            f"cell '{run_dir}' was run with other settings ({', '.join(changed)}); "
            "delete that folder to run it again, or give the bench another name"
        )


@contextmanager
def _cell_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` while the block runs; yields False when another process holds it.

    A worker of a killed bench may still be finishing its cell; the lock keeps a resumed bench off it.
    (No lock where ``fcntl`` is missing, i.e. on Windows.)
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield True
        return
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_cell(spec: BenchSpec, cell: Cell, base_weights: Path | None, threads: int | None) -> CellOutcome:
    """Run one cell as a prune job (in this process); failures come back as an outcome, not raised."""
    log = spec.bench_dir / "logs" / f"{cell.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with _cell_lock(log.with_suffix(".lock")) as locked:
        if not locked:
            return CellOutcome(
                cell.name,
                "failed",
                error="another process is running this cell (a worker of an interrupted bench still finishing?); "
                "run the bench again when it has ended",
            )
        return _run_locked(spec, cell, base_weights, threads, log)


def _run_locked(spec: BenchSpec, cell: Cell, base_weights: Path | None, threads: int | None, log: Path) -> CellOutcome:
    import torch
    from rich.console import Console

    from ..jobs import run_prune_job

    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as handle:
        console = Console(file=handle, width=160, highlight=False, soft_wrap=True)
        try:
            if base_weights is not None and not base_weights.is_file():
                raise RunFolderError(f"its base model '{base_weights}' was not written (that cell failed)")
            cfg = cell_config(spec, cell, base_weights=base_weights)
            run_prune_job(cfg, resume="auto", progress=False, console=console)
        except Exception as exc:  # noqa: BLE001 - a failed cell must not stop the bench
            handle.write(traceback.format_exc())
            return CellOutcome(cell.name, "failed", time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
    return CellOutcome(cell.name, "ran", time.perf_counter() - start)


class _InlineExecutor(cf.Executor):
    """Runs each submitted call at once, in this process (``jobs=1``: plain tracebacks, Ctrl-C works)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        future.set_result(fn(*args, **kwargs))
        return future


def estimate_seconds(spec: BenchSpec, rows: list[PlannedCell] | None = None) -> tuple[int, float | None]:
    """Training epochs left and, when some cells are finished, the seconds they will take (1 job).

    Seconds are estimated from the finished cells' seconds per epoch; None when no cell is finished.
    """
    rows = plan(spec) if rows is None else rows
    epochs_left = 0
    per_epoch: list[float] = []
    for row in rows:
        cfg = cell_config(spec, row.cell)
        own_pretrain = cfg.pretrain.epochs if (cfg.pretrain is not None and row.base_weights is None) else 0
        if row.state != "finished":
            epochs_left += cfg.finetune.epochs + own_pretrain
            continue
        result = _read_json(spec.bench_dir / row.cell.name / RESULT_FILE) or {}
        epochs = sum((result.get("epochs") or {}).values())
        if epochs:
            per_epoch.append(float(result.get("wall_time_s", 0.0)) / epochs)
    return epochs_left, (statistics.mean(per_epoch) * epochs_left if per_epoch else None)


def _write_status(spec: BenchSpec, rows: list[PlannedCell], status: dict[str, str]) -> None:
    write_json_atomic(
        spec.bench_dir / "bench.json",
        {"name": spec.name, "cells": [{"name": r.cell.name, "status": status[r.cell.name]} for r in rows]},
    )


def run_bench(
    spec: BenchSpec,
    *,
    jobs: int = 1,
    threads: int | None = None,
    on_outcome: Callable[[CellOutcome, dict[str, int]], None] | None = None,
) -> BenchSummary:
    """Run every cell of the bench that is not finished yet.

    Args:
        spec: The bench.
        jobs: Worker processes (1: run cells in this process).
        threads: torch CPU threads per cell (default: 1 when ``jobs > 1``, else torch's choice).
        on_outcome: Called after each cell with its outcome and counts ``{done, failed, running, left}``.

    Returns:
        The outcomes: ``ran``, ``skipped`` (finished before) and ``failed`` cells.

    Raises:
        RunFolderError: A finished cell was run with other settings than the bench now gives it.
        KeyboardInterrupt: Passed on after cancelling the cells not started (finished cells stay finished).

    Example:
        >>> from decayprune.bench.spec import load_bench
        >>> run_bench(load_bench("benchmarks/cpu-quick.yaml"), jobs=2)  # doctest: +SKIP
    """
    if jobs < 1:
        raise ConfigError([f"--jobs: got {jobs}; give 1 or more"])
    rows = plan(spec)
    summary = BenchSummary()
    status = {r.cell.name: "finished" if r.state == "finished" else "pending" for r in rows}
    waiting: dict[str, list[PlannedCell]] = {}
    ready: list[PlannedCell] = []
    for row in rows:
        if row.state == "finished":
            _check_finished(spec, row)
            summary.outcomes.append(CellOutcome(row.cell.name, "skipped"))
        elif row.leader is not None and status[row.leader] != "finished":
            waiting.setdefault(row.leader, []).append(row)
        else:
            ready.append(row)
    spec.bench_dir.mkdir(parents=True, exist_ok=True)
    _write_status(spec, rows, status)
    threads = threads if threads is not None else (1 if jobs > 1 else None)
    executor: cf.Executor = (
        _InlineExecutor()
        if jobs == 1
        else cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    )
    running: dict[cf.Future[CellOutcome], PlannedCell] = {}

    def counts() -> dict[str, int]:
        values = list(status.values())
        done = values.count("finished")
        return {"done": done, "failed": values.count("failed"), "running": len(running), "left": len(values) - done}

    try:
        while ready or running:
            while ready and len(running) < jobs:
                row = ready.pop(0)
                status[row.cell.name] = "running"
                running[executor.submit(run_cell, spec, row.cell, row.base_weights, threads)] = row
            done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for future in done:
                row = running.pop(future)
                outcome = future.result()
                status[row.cell.name] = "finished" if outcome.status == "ran" else "failed"
                summary.outcomes.append(outcome)
                ready.extend(waiting.pop(row.cell.name, []))  # followers start even if it failed: they fail clearly
                _write_status(spec, rows, status)
                if on_outcome is not None:
                    on_outcome(outcome, counts())
    except BaseException:
        for future in running:
            future.cancel()
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return summary
