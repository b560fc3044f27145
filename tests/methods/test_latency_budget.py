"""target_latency_fraction: every method meets a latency budget read from a given per-layer table."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from methods_budget_testing import METHODS, X, run_method
from pydantic import ValidationError

from decayprune import PruneSettings, create_model
from decayprune.measure.latency_table import LatencyTable
from decayprune.structure import StructureSet
from decayprune.structure.budget_cost import timing_setup
from decayprune.structure.latency_cost import LATENCY_TABLE_FILE, LatencyCost, layer_signatures

TARGET = 0.5


def given_table(run_dir: Path, settings: PruneSettings) -> LatencyTable:
    """A made-up table: each layer costs a fixed launch time plus time stepping up every 16 channels
    (not proportional to MACs), written where the Pruner looks for its cache."""
    s = StructureSet(create_model("small_cnn", num_classes=10, in_channels=1), X[:1])
    table = LatencyTable(timing_setup(settings))
    for lc, sig in zip(s.cost.layers, layer_signatures(s), strict=True):
        outs = sorted({1, *range(4, lc.out_channels + 1, 4), lc.out_channels})
        ins = [lc.in_channels] if lc.kind in ("norm", "depthwise") else sorted({1, lc.in_channels // 2, lc.in_channels})
        work = lc.positions * lc.per_position * 1e-6
        matmul = lc.kind in ("conv", "linear")
        table.add(sig, outs, ins, [[0.05 + work * -(-o // 16) * 16 * (i if matmul else 1) for i in ins] for o in outs])
    table.layers_ms = sum(LatencyCost(s, table).layer_ms(torch.zeros(s.num_structures, dtype=torch.bool)))
    table.rest_fixed_ms, table.rest_volume_ms = 0.1 * table.layers_ms, 0.15 * table.layers_ms  # overhead, elementwise
    table.full_ms = table.layers_ms * 1.25
    table.save(run_dir / LATENCY_TABLE_FILE, layer_signatures(s))
    return table


@pytest.mark.parametrize("method", METHODS)
def test_every_method_meets_the_latency_budget_of_a_given_table(method: str, tmp_path: Path) -> None:
    budget = {"target_latency_fraction": TARGET}
    table = given_table(tmp_path, PruneSettings(**budget, latency={"device": "cpu"}))
    pruner = run_method(method, run_dir=tmp_path, **budget)
    cost = pruner.context.cost
    assert isinstance(cost, LatencyCost) and cost.table.full_ms == pytest.approx(table.full_ms)  # the given table
    reached = cost(pruner.structures.pruned) / cost(torch.zeros_like(pruner.structures.pruned))
    assert TARGET - 0.1 <= reached <= TARGET + 0.01, f"{method}: {reached:.3f} of the latency"
    macs = pruner.structures.macs() / pruner.base_macs
    assert abs(macs - reached) > 0.02, "the latency budget should not simply be the MACs budget"
    assert "latency_committed_fraction" in pruner.summary()


def test_budgets_exclude_each_other_and_latency_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="exactly one of .*got target_macs_fraction, target_latency_fraction"):
        PruneSettings(target_macs_fraction=0.5, target_latency_fraction=0.5)
    with pytest.raises(ValidationError, match="got none"):
        PruneSettings()
    with pytest.raises(ValidationError, match="threads: got 4; CPU threads do not apply"):
        PruneSettings(target_latency_fraction=0.5, latency={"device": "cuda", "threads": 4})
    with pytest.raises(ValidationError, match="float16"):
        PruneSettings(target_latency_fraction=0.5, latency={"device": "cpu", "dtype": "float16"})
    with pytest.raises(ValidationError, match="'tpu'; allowed"):
        PruneSettings(target_latency_fraction=0.5, latency={"device": "tpu"})
    s = PruneSettings(target_latency_fraction=0.4)
    assert s.budget_kind == "latency" and s.remaining_fraction() == 0.4
    with pytest.raises(ValueError, match="latency"):
        s.remaining_macs_fraction()


def test_a_cached_table_for_another_setup_is_not_reused(tmp_path: Path) -> None:
    settings = PruneSettings(target_latency_fraction=TARGET, latency={"device": "cpu"})
    given_table(tmp_path, settings)
    signatures = layer_signatures(StructureSet(create_model("small_cnn", num_classes=10, in_channels=1), X[:1]))
    other = PruneSettings(target_latency_fraction=TARGET, latency={"device": "cpu", "batch_size": 8})
    assert LatencyTable.load(tmp_path / LATENCY_TABLE_FILE, timing_setup(settings), signatures) is not None
    assert LatencyTable.load(tmp_path / LATENCY_TABLE_FILE, timing_setup(other), signatures) is None
    assert LatencyTable.load(tmp_path / LATENCY_TABLE_FILE, timing_setup(settings), signatures[1:]) is None
