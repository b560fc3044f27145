"""What the structures self-rectifying released did afterwards, read from finished ``sp+sr`` run folders.

Usage:
    python benchmarks/sr_releases.py runs/defaults/*-sp-sr
    python benchmarks/sr_releases.py runs/defaults/*-sp-sr --out benchmarks/results/defaults/sr-releases.md

For every run folder (one of ``decayprune prune`` with ``policy: sp+sr``) it rebuilds the unpruned
model from ``pruned.json``, reads the base weights the run started from (``model.weights`` of its
``config.yaml``) and the weights at its last step (``prune/checkpoint/model.safetensors``, before
compaction), and takes every ``release`` event of ``prune/dpm_events.jsonl``. Per structure the
norm is the L2 norm of everything it produces (its output-channel slices, coupled layers included).

Printed per (model, MACs target), pooled over the runs given:

* ``releases / run`` and ``re-selected %``: how many releases a run had, and the share of released
  structures that a later selection picked again (the release was undone);
* ``decayed at release``: how far the decay of a released structure had gone (median of
  ``steps decaying / N``);
* ``base norm pct``: where a released structure's base norm stood among its layer's structures
  (median percentile; low means the base ranking had called it weak);
* ``end / base``: norm at the end over norm at the base, median for the released structures and for
  the structures of the same layers that were never selected;
* ``blew up %``: released structures that ended with more than 3x the largest never-selected norm
  of their layer.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from rich.table import Table

from decayprune import StructureSet
from decayprune.files import write_text_atomic
from decayprune.jobs.build import load_weights
from decayprune.models import create
from defaults import table_markdown

BLOW_UP = 3.0  # a released structure "blew up" above this multiple of its layer's largest kept norm
Record = dict[str, Any]


def structure_norms(model: torch.nn.Module, structures: StructureSet, weights: Path) -> torch.Tensor:
    """The L2 norm of every structure's producer slices with ``weights`` loaded into ``model``."""
    load_weights(model, weights)
    return structures.reduce().sqrt()


def read_events(run_dir: Path) -> list[dict]:
    """The DPM events of a run, in the order they were logged."""
    path = run_dir / "prune" / "dpm_events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def analyse_run(run_dir: Path) -> Record:
    """The releases of one finished sp+sr run: per released structure its history and norms."""
    spec = json.loads((run_dir / "pruned.json").read_text())["arch"]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    result = json.loads((run_dir / "result.json").read_text())
    decay_steps = result["decay"]["steps"]
    model = create(spec["name"], **spec["kwargs"])
    structures = StructureSet(model, torch.zeros(1, *spec["input_shape"]))
    base = structure_norms(model, structures, Path(config["model"]["weights"]))
    end = structure_norms(model, structures, run_dir / "prune" / "checkpoint" / "model.safetensors")
    events = read_events(run_dir)
    selected = {e["structure"] for e in events if e["kind"] in ("start", "oneshot", "forced")}
    released = []
    for i, event in enumerate(events):
        if event["kind"] != "release":
            continue
        unit = event["structure"]
        started = max(e["step"] for e in events[:i] if e["structure"] == unit and e["kind"] == "start")
        later = [e for e in events[i + 1 :] if e["structure"] == unit and e["kind"] == "start"]
        span = structures.group_of(unit).span
        layer_base = base[span]
        # The layer's never-selected structures (all of the layer's when every one was selected).
        kept = [u for u in range(span.start, span.stop) if u not in selected] or list(range(span.start, span.stop))
        kept_end = end[kept]
        kept_ratio = kept_end / base[kept].clamp_min(1e-12)
        released.append(
            {
                "layer": event["layer"],
                "decayed": (event["step"] - started) / decay_steps,
                "reselected": bool(later),
                "base_pct": float((layer_base < base[unit]).float().mean()) * 100,
                "end_over_base": float(end[unit] / base[unit].clamp_min(1e-12)),
                "kept_end_over_base": float(kept_ratio.median()),
                "blew_up": bool(end[unit] > BLOW_UP * kept_end.max()),
            }
        )
    return {
        "model": result["model"],
        "budget": result["target_macs_fraction"],
        "run": run_dir.name,
        "releases": released,
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percent(releases: list[Record], key: str) -> float:
    """The share of ``releases`` whose boolean ``key`` is true, in % (nan without releases)."""
    return 100 * sum(r[key] for r in releases) / len(releases) if releases else float("nan")


def summary(runs: list[Record]) -> Table:
    """One row per (model, MACs target): the release statistics pooled over its runs."""
    table = Table(title="what released structures did afterwards")
    columns = ["model", "MACs target", "runs", "releases / run", "re-selected %", "decayed at release"]
    columns += ["base norm pct", "end / base (released)", "end / base (never selected)", "blew up %"]
    for column in columns:
        table.add_column(column)
    grouped: dict[tuple, list[Record]] = defaultdict(list)
    for run in runs:
        grouped[(run["model"], run["budget"])].append(run)
    for (model, budget), group in sorted(grouped.items()):
        rel = [r for run in group for r in run["releases"]]
        table.add_row(
            model,
            f"{budget:.0%}",
            str(len(group)),
            f"{len(rel) / len(group):.1f}",
            f"{percent(rel, 'reselected'):.0f}",
            f"{median([r['decayed'] for r in rel]):.2f}",
            f"{median([r['base_pct'] for r in rel]):.0f}",
            f"{median([r['end_over_base'] for r in rel]):.2f}",
            f"{median([r['kept_end_over_base'] for r in rel]):.2f}",
            f"{percent(rel, 'blew_up'):.0f}",
        )
    return table


def main(argv: list[str] | None = None) -> list[Record]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished sp+sr run folders")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (Markdown)")
    args = parser.parse_args(argv)
    missing = [
        str(p)
        for p in args.runs
        if not ((p / "pruned.json").is_file() and (p / "prune" / "dpm_events.jsonl").is_file())
    ]
    if missing:
        parser.error(f"not a finished prune run folder (pruned.json and prune/dpm_events.jsonl): {', '.join(missing)}")
    runs = [analyse_run(path) for path in args.runs]
    table = summary(runs)
    Console().print(table)
    if args.out is not None:
        write_text_atomic(args.out, table_markdown(table) + "\n")
    return runs


if __name__ == "__main__":
    main()
