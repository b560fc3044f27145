"""Sensitivity analysis: which structures each ratio prunes, restored weights, caps and written files."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn as nn

from decayprune import UserError
from decayprune.sensitivity import caps_from_sensitivity, sensitivity_curves, write_sensitivity


def net() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.1, 0.1], [1.0, 1.0], [0.0, -0.5]]))  # L1: 3, .2, 2, .5
        model[2].weight.copy_(torch.arange(16.0).view(4, 4) - 8)
    return model


def test_each_ratio_zeroes_the_lowest_scored_structures_of_one_layer_only() -> None:
    model = net()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def evaluate(m: nn.Module) -> float:
        dead0 = (m[0].weight.abs().sum(1) == 0).nonzero().flatten().tolist()
        dead2 = (m[2].weight.abs().sum(1) == 0).nonzero().flatten().tolist()
        seen.append((dead0, dead2))
        return 100.0 - 10 * len(dead0) - len(dead2)

    rows = sensitivity_curves(model, torch.zeros(1, 2), evaluate, ratios=[0.25, 0.5, 0.9])
    first = [r for r in rows if r["layer"] == "0"]
    assert [(r["ratio"], r["pruned"], r["metric"]) for r in first] == [
        (0.0, 0, 100.0),
        (0.25, 1, 90.0),
        (0.5, 2, 80.0),
        (0.9, 3, 70.0),
    ]  # a layer keeps one structure
    assert ([1], []) in seen and ([1, 3], []) in seen and ([1, 2, 3], []) in seen  # lowest L1 first
    assert all(not (d0 and d2) for d0, d2 in seen)  # never two layers at once
    for key, value in model.state_dict().items():
        assert torch.equal(value, original[key]), key


def test_caps_stop_at_the_first_ratio_beyond_the_drop() -> None:
    rows = [{"layer": "a", "ratio": r, "metric": m} for r, m in [(0.0, 90), (0.2, 89.8), (0.4, 89.0), (0.6, 89.9)]]
    rows += [{"layer": "b", "ratio": r, "metric": m} for r, m in [(0.0, 90), (0.2, 80.0)]]
    assert caps_from_sensitivity(rows, max_drop=0.5) == {"a": 0.2, "b": 0.0}
    assert caps_from_sensitivity(rows, max_drop=1.0) == {"a": 0.6, "b": 0.0}
    with pytest.raises(UserError, match="ratio-0"):
        caps_from_sensitivity(rows[1:], max_drop=1.0)


def test_bad_ratios_are_refused() -> None:
    with pytest.raises(UserError, match=r"in \(0, 1\)"):
        sensitivity_curves(net(), torch.zeros(1, 2), lambda m: 0.0, ratios=[0.5, 1.0])


def test_write_sensitivity_writes_csv_png_and_caps(tmp_path) -> None:
    rows = sensitivity_curves(net(), torch.zeros(1, 2), lambda m: float(m[0].weight.detach().abs().sum()), ratios=[0.5])
    paths = write_sensitivity(rows, tmp_path / "out", max_drop=0.1)
    with open(paths["csv"]) as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(rows) and set(table[0]) == {"layer", "ratio", "pruned", "structures", "metric"}
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    caps = json.loads(paths["caps"].read_text())
    assert caps == {"0": 0.0, "2": 0.5}  # pruning layer 0 lowers the metric, layer 2 does not
