"""benchmarks/criteria.py: rows paired with the random row by seed, and summaries merged from invocations."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _criteria() -> ModuleType:
    spec = importlib.util.spec_from_file_location("criteria_bench", BENCHMARKS / "criteria.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rec(row: str, seed: int, top1: float, policy: str = "oneshot") -> dict:
    return {
        "row": row,
        "policy": policy,
        "seed": seed,
        "base_top1": 80.0,
        "top1": top1,
        "macs_pct": 20.0,
        "score_steps": 1.0,
        "releases": 0,
        "fit_s": 1.0,
    }


def test_rows_are_paired_with_random_by_seed_and_policy() -> None:
    crit = _criteria()
    records = [_rec("random", 0, 70.0), _rec("random", 1, 72.0), _rec("x", 0, 71.0), _rec("x", 1, 75.0)]
    records += [_rec("x", 2, 99.0), _rec("x", 0, 10.0, policy="sp+sr")]  # no random partner: left out
    assert crit.paired_vs(records, "x", "oneshot") == "+2.00 ± 1.00"  # diffs 1 and 3
    assert crit.paired_vs(records, "x", "sp+sr") == "-"
    assert crit.paired_vs(records, "random", "oneshot") == "-"


def test_merged_summaries_keep_one_record_per_row_policy_and_seed(tmp_path: Path) -> None:
    crit = _criteria()
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps([_rec("random", 0, 70.0), _rec("x", 0, 71.0)]))
    second.write_text(json.dumps([_rec("random", 0, 70.5), _rec("y", 0, 69.0)]))  # random again: the later wins
    merged = crit.merge([first, second])
    assert sorted((r["row"], r["top1"]) for r in merged) == [("random", 70.5), ("x", 71.0), ("y", 69.0)]
    out = tmp_path / "table.md"
    crit.main(["--merge", str(first), str(second), "--markdown", str(out)])
    text = out.read_text()
    assert "| x | oneshot | 71.00 | -9.00 | +0.50 |" in text and "| y | oneshot | 69.00 | -11.00 | -1.50 |" in text


def test_an_unknown_preset_is_refused() -> None:
    with pytest.raises(SystemExit):
        _criteria().main(["--preset", "imagenet"])
