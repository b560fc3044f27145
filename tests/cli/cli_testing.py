"""Helpers of the command-line tests (imported by their modules; fixtures live in conftest.py)."""

from __future__ import annotations

import pytest

from decayprune.cli import main

TINY = ["--set", "data.train_subset=96", "--set", "data.test_subset=48", "--set", "train.batch_size=32"]

PRUNE_TINY = [
    "--set",
    "data.train_subset=256",
    "--set",
    "data.test_subset=96",
    "--set",
    "pretrain={epochs: 1, batch_size: 64, device: cpu}",
    "--set",
    "finetune.epochs=2",
    "--set",
    "finetune.batch_size=64",
    "--set",
    "finetune.device=cpu",
    "--set",
    "prune={method: l1, target_macs_fraction: 0.5, decay: {policy: sp, steps: 2}}",
]


def run_cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    """Run ``main(argv)``; return the exit code, stdout and stderr."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err
