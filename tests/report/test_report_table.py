"""The paper-shaped table: its numbers are those of the cells' result.json files."""

from __future__ import annotations

import csv
import io
import json
import statistics

import pytest

from decayprune.report import CSV_COLUMNS, aggregate, build_report, load_results, to_csv, to_markdown
from decayprune.report.table import Stat


def _record(method, policy, seed, top1, macs=40.0, params=45.0, status="ok"):
    return {
        "kind": "prune",
        "status": status,
        "model": "small_cnn",
        "dataset": "digits",
        "method": method,
        "policy": policy,
        "seed": seed,
        "macs_pct": macs + seed,
        "params_pct": params - seed,
        "base": {"top1": 90.0 + seed},
        "final": {"top1": top1},
        "releases": seed,
    }


def test_aggregate_mean_std_and_delta_vs_the_same_methods_oneshot():
    records = [
        _record("l1", "sp", 0, 70.0),
        _record("l1", "oneshot", 0, 60.0),
        _record("l1", "oneshot", 1, 66.0),
        _record("l1", "sp", 1, 71.0),
        _record("l1", "sp+sr", 2, 99.0),  # no oneshot for seed 2: no delta
        _record("random", "oneshot", 0, 10.0),
    ]
    rows = aggregate(records)
    assert [(r.method, r.policy) for r in rows] == [
        ("l1", "oneshot"),
        ("l1", "sp"),
        ("l1", "sp+sr"),
        ("random", "oneshot"),
    ]
    sp = rows[1]
    assert sp.seeds == [0, 1]
    assert sp.top1.mean == 70.5 and sp.top1.std == pytest.approx(statistics.stdev([70.0, 71.0]))
    assert sp.delta_vs_oneshot.mean == pytest.approx(((70 - 60) + (71 - 66)) / 2)
    assert sp.delta_vs_oneshot.std == pytest.approx(statistics.stdev([10.0, 5.0]))
    assert sp.macs_pct.mean == 40.5 and sp.params_pct.mean == 44.5 and sp.base_top1.mean == 90.5
    assert rows[2].delta_vs_oneshot.n == 0 and rows[2].top1.std == 0.0
    assert rows[0].delta_vs_oneshot.n == 0
    md = to_markdown(rows)
    assert "| l1 | sp | 40.50 ± 0.71 | 44.50 ± 0.71 | 90.50 ± 0.71 | 70.50 ± 0.71 | +7.50 ± 3.54 |" in md.replace(
        "small_cnn | digits | ", ""
    )
    assert md.count("\n") == 2 + len(rows)


def test_stat_text():
    assert Stat.of([]).text() == "—"
    assert Stat.of([2.0]).text(sign=True) == "+2.00"
    assert Stat.of([1.0, 2.0, 3.0]).text() == "2.00 ± 1.00"


def test_table_numbers_equal_the_cells_result_files(small_bench):
    bench_dir = small_bench.bench_dir
    build_report(bench_dir)
    results = [json.loads(p.read_text()) for p in sorted(bench_dir.glob("*/result.json"))]
    assert len(results) == 4 and load_results(bench_dir) == results
    table = list(csv.DictReader(io.StringIO((bench_dir / "report" / "table.csv").read_text())))
    assert list(table[0]) == CSV_COLUMNS and len(table) == 2
    oneshot = {r["seed"]: r for r in results if r["policy"] == "oneshot"}
    for row in table:
        mine = [r for r in results if r["policy"] == row["policy"]]
        assert row["seeds"] == " ".join(str(r["seed"]) for r in mine)
        for column, values in [
            ("macs_pct", [r["macs_pct"] for r in mine]),
            ("params_pct", [r["params_pct"] for r in mine]),
            ("base_top1", [r["base"]["top1"] for r in mine]),
            ("top1", [r["final"]["top1"] for r in mine]),
        ]:
            assert float(row[f"{column}_mean"]) == pytest.approx(statistics.fmean(values), abs=1e-12)
            assert float(row[f"{column}_std"]) == pytest.approx(statistics.stdev(values), abs=1e-12)
        if row["policy"] == "oneshot":
            assert row["delta_vs_oneshot_mean"] == ""
        else:
            deltas = [r["final"]["top1"] - oneshot[r["seed"]]["final"]["top1"] for r in mine]
            assert float(row["delta_vs_oneshot_mean"]) == pytest.approx(statistics.fmean(deltas), abs=1e-12)
    md = (bench_dir / "report" / "table.md").read_text()
    sp = [r["final"]["top1"] for r in results if r["policy"] == "sp+sr"]
    assert f"{statistics.fmean(sp):.2f} ± {statistics.stdev(sp):.2f}" in md


def test_failed_and_unreadable_results_are_left_out(tmp_path):
    for i, record in enumerate([_record("l1", "sp", 0, 50.0), _record("l1", "sp", 1, 0.0, status="failed")]):
        (tmp_path / f"c{i}").mkdir()
        (tmp_path / f"c{i}" / "result.json").write_text(json.dumps(record))
    (tmp_path / "c2").mkdir()
    (tmp_path / "c2" / "result.json").write_text("{half")
    rows = aggregate(load_results(tmp_path))
    assert len(rows) == 1 and rows[0].seeds == [0]
    assert to_csv(rows).count("\n") == 2
