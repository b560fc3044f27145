"""Latency tables: layer replicas, monotone interpolation, the JSON cache and a small real measurement."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from decayprune.measure.latency_table import LatencyTable, TimingSetup, probe_widths, replica
from decayprune.structure import StructureSet
from decayprune.structure.latency_cost import LatencyCost, latency_cost, layer_signatures


@pytest.mark.parametrize(
    ("module", "shape", "out_w", "in_w", "expected_in"),
    [
        (nn.Conv2d(16, 32, 3, stride=2, padding=1), [1, 16, 8, 8], 8, 4, 4),
        (nn.Conv2d(16, 16, 3, groups=16, padding=1), [1, 16, 8, 8], 6, 6, 6),
        (nn.Conv2d(16, 32, 1, groups=4), [1, 16, 8, 8], 8, 8, 8),
        (nn.ConvTranspose2d(8, 4, 2, stride=2), [1, 8, 4, 4], 2, 6, 6),
        (nn.Linear(32, 64), [1, 5, 32], 16, 12, 12),
        (nn.BatchNorm2d(16), [1, 16, 8, 8], 10, 10, 10),
        (nn.LayerNorm(32), [1, 5, 32], 20, 20, 20),
        (nn.GroupNorm(4, 16), [1, 16, 8, 8], 8, 8, 8),
    ],
)
def test_replicas_run_at_the_asked_widths(
    module: nn.Module, shape: list[int], out_w: int, in_w: int, expected_in: int
) -> None:
    layer, input_shape = replica(module, shape, out_w, in_w)
    out = layer(torch.randn(input_shape))
    channel_dim = -1 if isinstance(module, (nn.Linear, nn.LayerNorm)) else 1
    assert input_shape[channel_dim] == expected_in
    assert out.shape[channel_dim] == out_w
    assert type(layer) is type(module)


def test_table_is_monotone_and_interpolates() -> None:
    table = LatencyTable(TimingSetup())
    table.add("x", [8, 16, 32], [4, 8], [[1.0, 2.0], [0.5, 3.0], [4.0, 5.0]])  # 0.5: noise below its neighbour
    assert table.entries["x"].ms == [[1.0, 2.0], [1.0, 3.0], [4.0, 5.0]]
    assert table.lookup("x", 12, 4) == pytest.approx(1.0)
    assert table.lookup("x", 24, 6) == pytest.approx(((1.0 + 3.0) / 2 + (4.0 + 5.0) / 2) / 2)
    assert table.lookup("x", 64, 16) == 5.0 and table.lookup("x", 1, 1) == 1.0  # clamped at the ends


def test_probe_widths_are_multiples_and_include_the_full_width() -> None:
    widths = probe_widths(100, 5, 8, 6)
    assert widths[-1] == 100 and all(w % 8 == 0 for w in widths[:-1]) and len(widths) <= 6


def test_measured_table_is_cached_and_predicts_the_full_model(tmp_path: Path) -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 8, 3), nn.Flatten()
    )
    s = StructureSet(net, torch.zeros(1, 3, 8, 8), ignore_classifier=False)
    setup = TimingSetup(repeats=3, target_ms=0.2)
    cache = tmp_path / "latency_table.json"
    cost = latency_cost(s, setup, grid=3, cache=cache)
    assert cache.is_file() and cost.table.full_ms > 0
    assert set(cost.table.entries) == set(layer_signatures(s))
    none = torch.zeros(s.num_structures, dtype=torch.bool)
    assert cost(none) == pytest.approx(cost.table.full_ms)  # the prediction at full width is the measured model
    half = torch.arange(s.num_structures) < s.num_structures // 2
    assert cost(half) <= cost(none)
    again = LatencyTable.load(cache, setup, layer_signatures(s))
    assert again is not None and again.entries.keys() == cost.table.entries.keys()
    assert LatencyCost(s, again)(half) == pytest.approx(cost(half))
