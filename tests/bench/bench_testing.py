"""The tiny 2x2x2 bench file on synthetic data (methods x policies x seeds) that the bench tests run."""

from __future__ import annotations

from pathlib import Path

import yaml

TINY = {
    "name": "tiny",
    "base": {
        "data": {"train_subset": 96, "test_subset": 64},
        "pretrain": {"epochs": 1, "batch_size": 32, "device": "cpu"},
        "finetune": {"epochs": 2, "batch_size": 32, "device": "cpu"},
        "prune": {"target_macs_fraction": 0.5, "iterative_steps": 2, "decay": {"steps": 2}},
    },
    "matrix": {
        "model": ["small_cnn"],
        "dataset": ["synthetic"],
        "method": ["depgraph", "l1"],
        "policy": ["oneshot", "sp+sr"],
        "seed": [0, 1],
    },
}


def write_bench(folder: Path, **changes: object) -> Path:
    """Write the tiny bench with top-level ``changes`` (``matrix`` per axis) to ``folder/tiny.yaml``."""
    tree = {**TINY, "output_dir": str(folder / "runs"), **changes}
    if isinstance(changes.get("matrix"), dict):  # matrix changes replace single axes
        tree["matrix"] = {**TINY["matrix"], **changes["matrix"]}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path
