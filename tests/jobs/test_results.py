"""The one result schema: applied settings only, strict JSON, schema and status filled in."""

from __future__ import annotations

import json
from pathlib import Path

from decayprune.config import DecaySettings, load_config
from decayprune.jobs.results import RESULT_SCHEMA, applied_decay, common_fields, write_result


def test_applied_decay_keeps_only_what_the_policy_uses() -> None:
    assert applied_decay(DecaySettings(policy="oneshot", steps=50)) == {}
    assert applied_decay(DecaySettings(policy="sp", steps=50)) == {"steps": 50}
    sr = applied_decay(DecaySettings(policy="sp+sr", steps=50))
    assert set(sr) == {"steps", "t_rate", "t_len", "window", "cooldown"}


def test_write_result_is_strict_json(tmp_path: Path) -> None:
    record = write_result(tmp_path / "r.json", {"kind": "train", "top1": float("nan"), "base": {"x": float("inf")}})
    saved = json.loads((tmp_path / "r.json").read_text())
    assert (
        saved == record == {"schema": RESULT_SCHEMA, "status": "ok", "kind": "train", "top1": None, "base": {"x": None}}
    )


def test_common_fields_of_a_prune_run_use_its_finetune_seed() -> None:
    cfg = load_config(None, values={"prune": {"target_macs_fraction": 0.5}, "finetune": {"seed": 7}})
    fields = common_fields(cfg, "prune", [1, 8, 8])
    assert fields["seed"] == 7 and fields["kind"] == "prune" and fields["input_shape"] == [1, 8, 8]
