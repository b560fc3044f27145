"""The `prune` and `demo` sub-commands."""

from __future__ import annotations

import json

from decayprune.cli import main
from decayprune.prune_commands import DEMO_VARIANTS, demo_configs


def test_prune_command_writes_result(tmp_path, capsys):
    code = main([
        "prune", "--output-dir", str(tmp_path), "--name", "cli-prune", "--no-progress",
        "--set", "data.train_subset=300", "--set", "data.test_subset=100",
        "--set", "pretrain={epochs: 1, batch_size: 64, device: cpu}",
        "--set", "finetune.epochs=1", "--set", "finetune.batch_size=64", "--set", "finetune.device=cpu",
        "--set", "prune={method: l1, target_macs_fraction: 0.5, decay: {policy: sp, steps: 2}}",
    ])
    out = capsys.readouterr().out
    assert code == 0, out
    record = json.loads((tmp_path / "cli-prune" / "result.json").read_text())
    assert record["method"] == "l1" and record["policy"] == "sp"
    assert "MACs" in out


def test_prune_command_without_prune_section_exits_2(tmp_path, capsys):
    code = main(["prune", "--output-dir", str(tmp_path), "--set", "finetune.epochs=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "prune" in err and "Traceback" not in err


def test_prune_command_reports_misspelt_policy(tmp_path, capsys):
    code = main(["prune", "--output-dir", str(tmp_path),
                 "--set", "prune={method: depgraph, target_macs_fraction: 0.5, decay: {policy: sp+rs}}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "prune.decay.policy" in err and "sp+sr" in err


def test_demo_configs_prune_one_base_to_half_the_macs(tmp_path):
    configs = demo_configs(tmp_path)
    assert [label for label, _ in configs] == [label for label, _ in DEMO_VARIANTS]
    for _label, cfg in configs:
        assert cfg.data.name == "digits" and cfg.model.name == "small_cnn"
        assert cfg.prune.remaining_macs_fraction() == 0.5
        assert cfg.pretrain is not None
    assert {cfg.prune.decay.policy for _, cfg in configs} == {"oneshot", "sp+sr"}
