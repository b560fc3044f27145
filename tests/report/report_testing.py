"""A small real bench (l1 x oneshot/sp+sr x seeds 0, 1 on synthetic data) for the report tests."""

from __future__ import annotations

from pathlib import Path

from decayprune.bench import BenchSpec, run_bench

SMALL = {
    "name": "small",
    "base": {
        "data": {"name": "synthetic", "train_subset": 96, "test_subset": 64},
        "pretrain": {"epochs": 1, "batch_size": 32, "device": "cpu"},
        "finetune": {"epochs": 3, "batch_size": 32, "device": "cpu"},
        "prune": {"target_macs_fraction": 0.5, "iterative_steps": 2, "decay": {"steps": 2}},
    },
    "matrix": {"dataset": ["synthetic"], "method": ["l1"], "policy": ["oneshot", "sp+sr"], "seed": [0, 1]},
}


def run_small_bench(folder: Path) -> BenchSpec:
    """Run the small bench with its cells under ``folder``."""
    spec = BenchSpec.model_validate({**SMALL, "output_dir": str(folder)})
    summary = run_bench(spec)
    assert summary.names("failed") == [], summary.outcomes
    return spec
