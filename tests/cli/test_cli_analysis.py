"""``decayprune criteria`` and ``decayprune sensitivity`` on a tiny trained run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from cli_testing import PRUNE_TINY, run_cli

from decayprune.criteria import list_criteria


def test_criteria_lists_every_registered_criterion(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, ["criteria", "--json"])
    assert code == 0
    rows = json.loads(out)
    assert [row["name"] for row in rows] == sorted(list_criteria())
    taylor = next(row for row in rows if row["name"] == "taylor")
    assert "grads" in taylor["needs"] and "order" in taylor["options"]


def test_sensitivity_writes_curves_and_caps(
    capsys: pytest.CaptureFixture[str], trained_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sens"
    argv = ["sensitivity", "--run", str(trained_run), "--ratios", "0.25,0.75", "--output", str(out), "--max-drop", "5"]
    code, printed, err = run_cli(capsys, argv)
    assert code == 0, err
    with open(out / "sensitivity.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    layers = {row["layer"] for row in rows}
    assert layers and {float(row["ratio"]) for row in rows} == {0.0, 0.25, 0.75}
    assert len(rows) == 3 * len(layers)  # every layer at ratio 0 and at both ratios
    baseline = {float(row["metric"]) for row in rows if float(row["ratio"]) == 0.0}
    assert len(baseline) == 1  # weights are restored between layers: the unpruned metric never changes
    assert (out / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    caps = json.loads((out / "layer_caps.json").read_text())
    assert set(caps) <= layers and all(0 <= cap < 1 for cap in caps.values())
    assert "csv:" in printed


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--ratios", "0.5,1.5"], "between 0 and 1"), (["--criterion", "nope"], "unknown criterion")],
)
def test_sensitivity_bad_input(
    capsys: pytest.CaptureFixture[str], trained_run: Path, extra: list[str], message: str
) -> None:
    code, _, err = run_cli(capsys, ["sensitivity", "--run", str(trained_run), *extra])
    assert code == 2 and message in err


def test_sr_stats_plots_a_self_rectifying_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["prune", *PRUNE_TINY, "--set", "prune.decay.policy=sp+sr", "--output-dir", str(tmp_path)]
    code, _, err = run_cli(capsys, [*argv, "--name", "sr", "--no-progress"])
    assert code == 0, err
    code, out, err = run_cli(capsys, ["sr-stats", str(tmp_path / "sr"), "--output", str(tmp_path / "sr.png")])
    assert code == 0, err
    assert "largest C_rate" in out and "T_len" in out
    assert (tmp_path / "sr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sr_stats_of_a_run_without_self_rectifying(capsys: pytest.CaptureFixture[str], pruned_run: Path) -> None:
    code, _, err = run_cli(capsys, ["sr-stats", str(pruned_run)])
    assert code == 2 and "sp+sr" in err  # the sp run has no statistics: the message says which runs do
