"""Paper-style table: DepGraph, DepGraph + SP, DepGraph + SP + SR (mean +- std over seeds).

Usage:
    python benchmarks/depgraph_dpm.py                      # CPU preset (digits, small_cnn, 3 seeds)
    python benchmarks/depgraph_dpm.py --preset fashion     # Fashion-MNIST (Debian dataset-fashion-mnist)
    python benchmarks/depgraph_dpm.py --preset gpu --data-dir /path/to/cifar-10-batches-py   # shortened (ours)
    python benchmarks/depgraph_dpm.py --preset paper-sl --data-dir DIR   # configs/paper/depgraph_resnet56_sl.yaml
    python benchmarks/depgraph_dpm.py --seeds 0 1 --policies oneshot sp+sr --method l1

Every seed trains one base model that all policies prune (same weights, same data order), so
the columns differ only by the zeroing policy. MACs and params are % of the base model,
measured on the compacted model; top-1 deltas are against the base of the same seed.
Each run's folder (result.json, dpm_events.jsonl, metrics) is kept under --output-dir.
"""

from __future__ import annotations

from typing import Any

import policy_runs

PRESETS: dict[str, dict[str, Any]] = {
    # Aggressive budget and short fine-tuning so that differences between policies can show (DESIGN.md 8).
    "cpu": {
        "data": {"name": "digits"},
        "model": {"name": "small_cnn"},
        "pretrain": {"epochs": 12, "batch_size": 64, "lr": 0.05, "schedule": "cosine"},
        "finetune": {"epochs": 6, "batch_size": 64, "lr": 0.01, "schedule": "cosine"},
        "prune": {"target_macs_fraction": 0.2, "iterative_steps": 3, "decay": {"steps": 20, "cooldown": 40}},
    },
    "fashion": {
        "data": {"name": "fashion-mnist", "train_subset": 20000},
        "model": {"name": "small_cnn"},
        "pretrain": {"epochs": 3, "batch_size": 128, "lr": 0.05, "schedule": "cosine"},
        "finetune": {"epochs": 2, "batch_size": 128, "lr": 0.01, "schedule": "cosine"},
        "prune": {"target_macs_fraction": 0.2, "iterative_steps": 3, "decay": {"steps": 50, "cooldown": 100}},
    },
    # The DepGraph CIFAR-10 ResNet-56 baseline with 20 selections over 40 epochs and no sparse learning (ours);
    # DepGraph's own protocol is the "paper" / "paper-sl" presets. Needs a GPU and the data.
    "gpu": {
        "data": {"name": "cifar10"},
        "model": {"name": "resnet56"},
        "pretrain": policy_runs.CIFAR_PRETRAIN,
        "finetune": {
            **policy_runs.GPU_TRAINING,
            "epochs": 100,
            "lr": 0.01,
            "schedule": "step",
            "milestones": [60, 80],
        },
        "prune": {"speed_up": 2.11, "iterative_steps": 20, "end_epoch": 40, "decay": {"steps": 400, "cooldown": 1000}},
    },
}

# The DPM table rows as shipped in configs/paper/ (see configs/paper/README.md).
PRESETS["paper"] = policy_runs.paper_preset("depgraph_resnet56")
PRESETS["paper-sl"] = policy_runs.paper_preset("depgraph_resnet56_sl")


def main(argv: list[str] | None = None) -> None:
    parser = policy_runs.parser_for(__doc__, PRESETS, "runs/bench")
    parser.add_argument("--method", default="depgraph")
    args = parser.parse_args(argv)
    policy_runs.main(args, PRESETS, args.method, lambda a, seed, policy: {"prune": {"method": a.method}})


if __name__ == "__main__":
    main()
