"""width_multiple: every method keeps, per pruned layer, a multiple of it; narrower layers stay whole."""

from __future__ import annotations

import pytest
import torch
from methods_budget_testing import METHODS, kept_per_layer, run_method
from pydantic import ValidationError

from decayprune import PruneSettings, create_model
from decayprune.config.latency import default_width_multiple
from decayprune.methods import allowed_kept, snap_to_widths
from decayprune.structure import StructureSet
from decayprune.structure.budget_cost import resolve_width_multiple

# small_cnn has layers of 128, 64, 64, 32 and 32 channels: with 48, the 32-channel layers are
# narrower than the multiple, a 64-channel layer may keep 48 (or 64), a 128-channel one 48 or 96.
MULTIPLE = 48


@pytest.mark.parametrize("policy", ["oneshot", "sp+sr"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_keeps_multiples_in_every_pruned_layer(method: str, policy: str) -> None:
    pruner = run_method(method, policy=policy, target_macs_fraction=0.6, width_multiple=MULTIPLE)
    kept = kept_per_layer(pruner)
    assert any(k < full for k, full in kept.values()), f"{method} pruned nothing: {kept}"
    for name, (k, full) in kept.items():
        if full < MULTIPLE:
            assert k == full, f"{method}: {name} ({full} channels, narrower than {MULTIPLE}) was pruned to {k}"
        elif k < full:
            assert k % MULTIPLE == 0, f"{method}: {name} keeps {k} of {full}, not a multiple of {MULTIPLE}"


def test_a_release_is_brought_back_onto_the_grid() -> None:
    # Self-rectifying gives channels back; the refill prunes that layer down to the multiple below.
    pruner = run_method("l1", policy="sp+sr", target_macs_fraction=0.6, width_multiple=16)
    assert pruner.engine.releases > 0
    assert all(k == full or k % 16 == 0 for k, full in kept_per_layer(pruner).values()), kept_per_layer(pruner)


def test_without_a_multiple_widths_are_free() -> None:
    # The same run with width_multiple 1 leaves widths that are not multiples of 48: the test above can fail.
    kept = kept_per_layer(run_method("depgraph", target_macs_fraction=0.6, width_multiple=1))
    assert any(k < full and k % MULTIPLE for k, full in kept.values()), kept


def test_snap_respects_what_is_already_committed() -> None:
    s = StructureSet(create_model("small_cnn", num_classes=10, in_channels=1), torch.zeros(1, 1, 8, 8))
    layer = next(layer for layer in s.layers if layer.num_channels == 64)
    committed = torch.zeros(s.num_structures, dtype=torch.bool)
    committed[layer.first : layer.first + 3] = True  # 61 kept: off the grid of 8
    ids = layer.ids[3:20]
    picked = snap_to_widths(ids, s, committed, 8)
    assert picked.tolist() == ids[:13].tolist()  # 61 - 13 = 48
    assert allowed_kept(layer, 8) == 8 and allowed_kept(layer, 128) == 0


def test_auto_is_8_on_cuda_and_1_on_the_cpu() -> None:
    assert default_width_multiple("cuda") == 8 and default_width_multiple("cuda:3") == 8
    assert default_width_multiple("cpu") == 1
    assert resolve_width_multiple(PruneSettings(target_macs_fraction=0.5, latency={"device": "cpu"})) == 1
    assert resolve_width_multiple(PruneSettings(target_macs_fraction=0.5, latency={"device": "cuda"})) == 8
    assert resolve_width_multiple(PruneSettings(target_macs_fraction=0.5, width_multiple=4)) == 4


def test_round_to_is_refused_with_what_replaces_it() -> None:
    with pytest.raises(ValidationError, match="round_to: got 8; .*replaced by width_multiple"):
        PruneSettings(target_macs_fraction=0.5, round_to=8)
    with pytest.raises(ValidationError, match="width_multiple"):
        PruneSettings(target_macs_fraction=0.5, width_multiple=0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    with pytest.raises(ValueError, match=r"round_to=8.*width_multiple"):
        StructureSet(model, torch.zeros(1, 1, 8, 8), round_to=8)  # type: ignore[arg-type]
