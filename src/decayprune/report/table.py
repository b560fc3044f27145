"""The paper-shaped table of a bench: one row per model, dataset, method and policy, mean +- std over seeds.

Columns: MACs and params as % of the base model (measured on the compacted model), base and pruned
top-1, and the pruned top-1 against the same method's ``oneshot`` cell of the same seed (the
method without DPM), averaged over the seeds that have both. Std is the sample standard
deviation (0 for one seed).

Example:
    >>> recs = [{"model": "m", "dataset": "d", "method": "l1", "policy": p, "seed": s, "macs_pct": 50.0,
    ...          "params_pct": 60.0, "base": {"top1": 90.0}, "final": {"top1": t}, "releases": 0}
    ...         for p, s, t in [("oneshot", 0, 80.0), ("oneshot", 1, 82.0), ("sp", 0, 85.0), ("sp", 1, 85.0)]]
    >>> rows = aggregate(recs)
    >>> rows[1].policy, rows[1].top1.mean, rows[1].delta_vs_oneshot.mean
    ('sp', 85.0, 4.0)
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CSV_COLUMNS", "Stat", "TableRow", "aggregate", "load_results", "markdown_cells", "to_csv", "to_markdown"]


@dataclass(frozen=True)
class Stat:
    """Mean, sample std and count of some values.

    Example:
        >>> Stat.of([1.0, 3.0]).text()
        '2.00 ± 1.41'
    """

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        """The statistics of ``values`` (nan mean when empty)."""
        if not values:
            return cls(float("nan"), float("nan"), 0)
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))

    def text(self, sign: bool = False) -> str:
        """``mean ± std`` with two decimals (``—`` when there are no values)."""
        if self.n == 0:
            return "—"
        mean = f"{self.mean:+.2f}" if sign else f"{self.mean:.2f}"
        return mean if self.n == 1 else f"{mean} ± {self.std:.2f}"


@dataclass(frozen=True)
class TableRow:
    """One row of the table."""

    model: str
    dataset: str
    method: str
    policy: str
    seeds: list[int]
    macs_pct: Stat
    params_pct: Stat
    base_top1: Stat
    top1: Stat
    delta_vs_oneshot: Stat
    releases: Stat


def load_results(bench_dir: str | Path) -> list[dict[str, Any]]:
    """The ``result.json`` records of a bench's finished prune cells (status ``ok``), sorted by folder name."""
    records = []
    for path in sorted(Path(bench_dir).glob("*/result.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("kind") == "prune" and record.get("status") == "ok":
            records.append(record)
    return records


_POLICY_ORDER = {"oneshot": 0, "sp": 1, "sp+sr": 2}


def aggregate(records: list[dict[str, Any]]) -> list[TableRow]:
    """Group prune results by model, dataset, method and policy (in first-seen order, policies oneshot, sp, sp+sr)."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["model"], r["dataset"], r["method"], r["policy"]), []).append(r)
    oneshot = {(r["model"], r["dataset"], r["method"], r["seed"]): r for r in records if r["policy"] == "oneshot"}
    order = list(dict.fromkeys(k[:3] for k in groups))
    keys = sorted(groups, key=lambda k: (order.index(k[:3]), _POLICY_ORDER.get(k[3], 9), k[3]))
    rows = []
    for key in keys:
        rs = sorted(groups[key], key=lambda r: r["seed"])
        deltas = []
        if key[3] != "oneshot":
            for r in rs:
                ref = oneshot.get((*key[:3], r["seed"]))
                if ref is not None:
                    deltas.append(r["final"]["top1"] - ref["final"]["top1"])
        rows.append(
            TableRow(
                *key,
                seeds=[int(r["seed"]) for r in rs],
                macs_pct=Stat.of([r["macs_pct"] for r in rs]),
                params_pct=Stat.of([r["params_pct"] for r in rs]),
                base_top1=Stat.of([r["base"]["top1"] for r in rs]),
                top1=Stat.of([r["final"]["top1"] for r in rs]),
                delta_vs_oneshot=Stat.of(deltas),
                releases=Stat.of([float(r.get("releases", 0)) for r in rs]),
            )
        )
    return rows


_HEADERS = (
    "model",
    "dataset",
    "method",
    "policy",
    "MACs %",
    "params %",
    "base top-1",
    "top-1",
    "Δ vs oneshot",
    "releases",
    "seeds",
)


def markdown_cells(row: TableRow) -> list[str]:
    """The Markdown/HTML cells of one row."""
    return [
        row.model,
        row.dataset,
        row.method,
        row.policy,
        row.macs_pct.text(),
        row.params_pct.text(),
        row.base_top1.text(),
        row.top1.text(),
        row.delta_vs_oneshot.text(sign=True),
        row.releases.text(),
        str(len(row.seeds)),
    ]


def to_markdown(rows: list[TableRow]) -> str:
    """A GitHub Markdown table (mean ± std over seeds)."""
    lines = ["| " + " | ".join(_HEADERS) + " |", "|" + "|".join("---" for _ in _HEADERS) + "|"]
    lines += ["| " + " | ".join(markdown_cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


#: The CSV header: mean and std in separate columns, full float precision.
CSV_COLUMNS = (
    "model,dataset,method,policy,seeds,macs_pct_mean,macs_pct_std,params_pct_mean,params_pct_std,"
    "base_top1_mean,base_top1_std,top1_mean,top1_std,delta_vs_oneshot_mean,delta_vs_oneshot_std,releases_mean"
).split(",")


def to_csv(rows: list[TableRow]) -> str:
    """The table as CSV (:data:`CSV_COLUMNS`; seeds as ``0 1 2``; empty where there is no value)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        stats = [r.macs_pct, r.params_pct, r.base_top1, r.top1, r.delta_vs_oneshot]
        numbers: list[str] = []
        for s in stats:
            numbers += [repr(s.mean), repr(s.std)] if s.n else ["", ""]
        writer.writerow(
            [r.model, r.dataset, r.method, r.policy, " ".join(map(str, r.seeds)), *numbers, repr(r.releases.mean)]
        )
    return out.getvalue()
