"""Shared helpers of the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_testing import PRUNE_TINY, TINY

from decayprune.cli import main


@pytest.fixture(scope="package")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny digits train run shared by the tests that read its outputs."""
    out = tmp_path_factory.mktemp("runs")
    code = main(
        ["train", *TINY, "--set", "train.epochs=1", "--output-dir", str(out), "--name", "tiny", "--no-progress"]
    )
    assert code == 0
    return out / "tiny"


@pytest.fixture(scope="package")
def pruned_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny digits prune run (l1 + sp to 50% of the MACs) shared by eval / measure / export tests."""
    out = tmp_path_factory.mktemp("runs")
    code = main(["prune", *PRUNE_TINY, "--output-dir", str(out), "--name", "pruned", "--no-progress"])
    assert code == 0
    return out / "pruned"
