"""DepGraph's three phases in one config: sparse learning, pruning, fine-tuning."""

from __future__ import annotations

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from decayprune.config import ConfigError, load_config
from decayprune.jobs import run_prune_job

QUIET = Console(quiet=True)


def _values(tmp_path, **prune_options):
    return {
        "name": "sl",
        "output_dir": str(tmp_path),
        "data": {"name": "digits", "train_subset": 256, "test_subset": 128},
        "model": {"name": "small_cnn"},
        "pretrain": {"epochs": 1, "batch_size": 64, "lr": 0.05, "device": "cpu"},
        "sparse_learning": {"epochs": 2, "batch_size": 64, "lr": 0.02, "schedule": "step", "milestones": [1]},
        "finetune": {"epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu"},
        "prune": {
            "method": "depgraph",
            "target_macs_fraction": 0.5,
            "iterative_steps": 1,
            "method_options": {"sparse_lambda": 0.05, "sparse_phase": "own", **prune_options},
            "decay": {"policy": "oneshot"},
        },
    }


def test_sparse_learning_phase_runs_before_pruning_with_its_own_schedule(tmp_path) -> None:
    cfg = load_config(None, values=_values(tmp_path))
    record = run_prune_job(cfg, progress=False, console=QUIET)
    assert record["epochs"] == {"pretrain": 1, "sparse_learning": 2, "finetune": 2}
    assert record["phase_time_s"]["sparse_learning"] > 0
    run = cfg.run_dir
    base, sparse = load_file(str(run / "base.safetensors")), load_file(str(run / "sparse.safetensors"))
    # The regulariser shrinks the weights: the sparse-learned conv rows are smaller than the base's.
    assert sparse["features.0.weight"].norm() < base["features.0.weight"].norm()
    assert (run / "sparse_learning" / "metrics.jsonl").is_file()
    # A second invocation resumes: the sparse-learned weights are reused, not retrained.
    again = run_prune_job(cfg, resume=True, progress=False, console=QUIET)
    assert again["epochs"]["sparse_learning"] == 2
    assert torch.equal(load_file(str(run / "sparse.safetensors"))["features.0.weight"], sparse["features.0.weight"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prune": {"method": "l1", "target_macs_fraction": 0.5}}, "method 'l1' has no sparse-learning regulariser"),
        ({"prune_options": {"sparse_lambda": 0.0}}, "sparse_lambda is 0"),
        ({"prune_options": {"sparse_phase": "pruning"}}, "sparse_phase is 'pruning'"),
        ({"drop": "sparse_learning"}, "sparse_phase 'own' needs a 'sparse_learning' section"),
    ],
)
def test_a_sparse_learning_setup_that_cannot_take_effect_is_refused(tmp_path, change, message) -> None:
    values = _values(tmp_path, **change.pop("prune_options", {}))
    if "drop" in change:
        del values[change.pop("drop")]
    values.update(change)
    with pytest.raises(ConfigError, match=message):
        load_config(None, values=values)
