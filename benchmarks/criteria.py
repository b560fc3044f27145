"""Criteria table: every criterion under ``oneshot`` and ``sp+sr`` at the same MACs target (mean +- std over seeds).

Usage:
    python benchmarks/criteria.py                                  # digits / small_cnn, 20% MACs, 3 seeds
    python benchmarks/criteria.py --seeds 0 --policies oneshot     # quicker
    python benchmarks/criteria.py --rows taylor bn_scale --ranking layer
    python benchmarks/criteria.py --preset fashion --seeds 0 1 --output-dir runs/crit-a   # Fashion-MNIST
    python benchmarks/criteria.py --merge runs/crit-a/criteria-summary.json runs/crit-b/criteria-summary.json \
        --markdown benchmarks/results/criteria_fashion.md     # one table from invocations run side by side

Presets: ``digits`` (the 8x8 task: 12 + 6 epochs, the decay settings it was tuned with) and
``fashion`` (Fashion-MNIST, 6,000 training images and the 10,000 test images, 4 + 2 epochs, every
prune setting but the 20% MACs target at the library defaults), where a paired difference of
0.3 points is signal. ``Δ random`` is each row minus the random row of the same seed and policy
(mean ± standard error over seeds).

``thinet + reconstruction`` is the ``thinet`` method: least-squares rescaling of the next layers
under ``oneshot`` (under ``sp+sr`` it ranks like ``iterative`` with the ``thinet`` criterion).

Every seed trains one base model that every row prunes (same weights, same data order), so rows
differ only by the criterion (and the policy). Data-pass criteria score on a fixed set of
training batches. ``score x step`` is a criterion's mean scoring time divided by the mean time of
one training step of the same run. MACs % is measured on the compacted model.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from decayprune import Pruner, Trainer, count_cost, evaluate, load_config
from decayprune.files import write_text_atomic
from decayprune.jobs.build import build_model, example_input, load_splits, make_loaders

PRESETS: dict[str, dict[str, Any]] = {
    "digits": {
        "data": {"name": "digits"},
        "model": {"name": "small_cnn"},
        "pretrain": {"epochs": 12, "batch_size": 64, "lr": 0.05, "schedule": "cosine"},
        "finetune": {"epochs": 6, "batch_size": 64, "lr": 0.01, "schedule": "cosine"},
        "prune": {"target_macs_fraction": 0.2, "iterative_steps": 3, "decay": {"steps": 20, "cooldown": 40}},
    },
    # The defaults suite's CPU task (benchmarks/defaults.py --preset cpu), one evaluation per phase.
    "fashion": {
        "data": {"name": "fashion-mnist", "train_subset": 6000},
        "model": {"name": "small_cnn"},
        "pretrain": {"epochs": 4, "batch_size": 128, "lr": 0.05, "schedule": "cosine", "eval_every": 4},
        "finetune": {"epochs": 2, "batch_size": 128, "lr": 0.01, "schedule": "cosine", "eval_every": 2},
        "prune": {"target_macs_fraction": 0.2},
    },
}

# label -> (method, criterion, criterion options, method options)
ROWS: dict[str, tuple[str, str | None, dict[str, Any], dict[str, Any]]] = {
    "random": ("iterative", "random", {}, {}),
    "group_norm": ("iterative", "group_norm", {}, {}),
    "l1_filter": ("iterative", "l1_filter", {}, {}),
    "bn_scale": ("iterative", "bn_scale", {}, {}),
    "bn_statistics": ("iterative", "bn_statistics", {}, {}),
    "taylor": ("iterative", "taylor", {}, {}),
    "taylor o2": ("iterative", "taylor", {"order": 2}, {}),
    "taylor (paper: raw)": ("iterative", "taylor", {"normalize": "none"}, {}),
    "taylor_activation": ("iterative", "taylor_activation", {}, {}),
    "hrank": ("iterative", "hrank", {}, {}),
    "chip": ("iterative", "chip", {}, {}),
    "thinet": ("iterative", "thinet", {}, {}),
    "snip": ("iterative", "snip", {}, {}),
    "nisp": ("iterative", "nisp", {}, {}),
    "nisp (uniform FRL)": ("iterative", "nisp", {"feature_ranking": "uniform"}, {}),
    "sosp_h": ("iterative", "sosp_h", {}, {}),
    "taylor gate (paper)": ("iterative", "taylor", {"form": "bn", "normalize": "none", "momentum": 0.9}, {}),
    "thinet + reconstruction": ("thinet", "thinet", {}, {}),
    # The per-layer ratios both papers' published numbers use (the same fraction of every layer).
    "hrank (per layer)": ("iterative", "hrank", {}, {"ranking": "layer"}),
    "chip (per layer)": ("iterative", "chip", {}, {"ranking": "layer"}),
    # NISP's paper prunes by per-layer ratios after ranking; SOSP-H's global ranking starves layers here.
    "nisp (per layer)": ("iterative", "nisp", {}, {"ranking": "layer"}),
    "sosp_h (per layer)": ("iterative", "sosp_h", {}, {"ranking": "layer"}),
    # The gradient-matrix row: layers in forward order, each pruned up to 1 - effective rank / channels.
    "max redundancy (layer-wise)": ("max_redundancy", "l1_filter", {}, {"ranking": "global"}),
    # The paper trains with the penalty from scratch (1e-4); a 6-epoch fine-tune needs a stronger one to move gammas.
    "slimming": ("slimming", None, {}, {"sparsity": 1e-2}),
}
CALIBRATION_BATCHES = 8


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def paired_vs(records: list[dict[str, Any]], row: str, policy: str, reference: str = "random") -> str:
    """``top1(row) - top1(reference)`` paired by seed (same policy): mean ± standard error, or ``-``."""
    ref = {r["seed"]: r["top1"] for r in records if r["row"] == reference and r["policy"] == policy}
    diffs = [
        r["top1"] - ref[r["seed"]] for r in records if r["row"] == row and r["policy"] == policy and r["seed"] in ref
    ]
    if row == reference or not diffs:
        return "-"
    if len(diffs) == 1:
        return f"{diffs[0]:+.2f}"
    return f"{statistics.mean(diffs):+.2f} ± {statistics.stdev(diffs) / len(diffs) ** 0.5:.2f}"


class _Timed:
    """Wraps a criterion's ``score`` to add up its wall time."""

    def __init__(self, criterion: Any) -> None:
        self.seconds, self.calls, inner = 0.0, 0, criterion.score

        def score(ctx: Any) -> torch.Tensor:
            start = time.perf_counter()
            try:
                return inner(ctx)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        criterion.score = score


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    console = Console(width=160)
    records = []
    for seed in args.seeds:
        tree = copy.deepcopy(PRESETS[args.preset])
        tree.update(name=f"criteria-s{seed}", output_dir=str(args.output_dir))
        if args.data:
            tree["data"] = {"name": args.data}
        if args.train_subset:
            tree["data"]["train_subset"] = args.train_subset
        if args.epochs:
            for phase, epochs in zip(("pretrain", "finetune"), args.epochs, strict=True):
                tree[phase].update(epochs=epochs, eval_every=epochs)
        tree["pretrain"]["seed"] = tree["finetune"]["seed"] = seed
        tree["pretrain"]["device"] = tree["finetune"]["device"] = "cpu"
        cfg = load_config(None, values=tree)
        splits = load_splits(cfg)
        example = example_input(splits)
        base = build_model(
            cfg.model,
            num_classes=splits.num_classes,
            in_channels=splits.in_channels,
            image_size=splits.image_size,
            seed=seed,
        )
        pre_train, pre_test = make_loaders(splits, cfg.model_copy(update={"finetune": cfg.pretrain}))
        Trainer(base, pre_train, pre_test, cfg.pretrain, progress=False).fit()
        base_top1 = float(evaluate(base, pre_test)["top1"])
        base_macs = count_cost(base, example).macs
        console.print(f"seed {seed}: base top-1 {base_top1:.2f}")
        for label in args.rows:
            method, criterion, criterion_options, method_options = ROWS[label]
            for policy in args.policies:
                torch.manual_seed(seed)
                model = copy.deepcopy(base)
                train_loader, test_loader = make_loaders(splits, cfg)
                calibration = [batch for _, batch in zip(range(CALIBRATION_BATCHES), train_loader, strict=False)]
                prune = cfg.prune.model_copy(
                    update={
                        "method": method,
                        "criterion": criterion,
                        "criterion_options": criterion_options,
                        "method_options": {"ranking": args.ranking, **method_options},
                        "decay": cfg.prune.decay.model_copy(update={"policy": policy}),
                    }
                )
                steps = max(1, cfg.finetune.epochs * len(train_loader))
                pruner = Pruner(
                    model,
                    example,
                    prune,
                    total_steps=steps,
                    steps_per_epoch=len(train_loader),
                    calibration_data=calibration,
                )
                timer = _Timed(pruner.method.criterion)
                start = time.perf_counter()
                Trainer(model, train_loader, test_loader, cfg.finetune, hooks=[pruner], progress=False).fit()
                fit_s = time.perf_counter() - start
                pruner.compact()
                top1 = float(evaluate(model, test_loader)["top1"])
                step_s = max(fit_s - timer.seconds, 1e-9) / steps
                record = {
                    "row": label,
                    "policy": policy,
                    "seed": seed,
                    "base_top1": base_top1,
                    "top1": top1,
                    "macs_pct": 100.0 * count_cost(model, example).macs / base_macs,
                    "score_steps": (timer.seconds / max(timer.calls, 1)) / step_s,
                    "releases": pruner.engine.releases,
                    "fit_s": fit_s,
                }
                console.print(
                    f"  {label:18s} {policy:8s} top-1 {top1:6.2f}  MACs {record['macs_pct']:5.1f}%  "
                    f"score {record['score_steps']:.1f} steps  ({fit_s:.1f}s)"
                )
                records.append(record)
    return records


COLUMNS = ("criterion", "policy", "top-1", "Δ top-1", "Δ random", "MACs %", "score × step", "releases", "seeds")


def table_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """One row of :data:`COLUMNS` per (criterion row, policy), in the order they first appear."""
    out = []
    for label in dict.fromkeys(r["row"] for r in records):
        for policy in dict.fromkeys(r["policy"] for r in records):
            rows = [r for r in records if r["row"] == label and r["policy"] == policy]
            if not rows:
                continue
            out.append(
                [
                    label,
                    policy,
                    _mean_std([r["top1"] for r in rows]),
                    _mean_std([r["top1"] - r["base_top1"] for r in rows]),
                    paired_vs(records, label, policy),
                    _mean_std([r["macs_pct"] for r in rows]),
                    _mean_std([r["score_steps"] for r in rows]),
                    _mean_std([float(r["releases"]) for r in rows]),
                    str(len(rows)),
                ]
            )
    return out


def table(records: list[dict[str, Any]], title: str) -> Table:
    out = Table(title=title)
    for col in COLUMNS:
        out.add_column(col)
    for row in table_rows(records):
        out.add_row(*row)
    return out


def markdown(records: list[dict[str, Any]], title: str) -> str:
    """The table as Markdown, under ``title``."""
    lines = [f"{title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(records)]
    return "\n".join(lines) + "\n"


def merge(paths: list[Path]) -> list[dict[str, Any]]:
    """The records of saved summaries; a later file wins for the same (row, policy, seed)."""
    keyed: dict[tuple[str, str, int], dict[str, Any]] = {}
    for path in paths:
        for r in json.loads(path.read_text()):
            keyed[(r["row"], r["policy"], r["seed"])] = r
    return list(keyed.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--policies", nargs="+", default=["oneshot", "sp+sr"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--ranking", choices=["global", "layer"], default="global")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/bench"))
    parser.add_argument("--preset", choices=sorted(PRESETS), default="digits")
    parser.add_argument("--data", help="a registered dataset instead of the preset's, e.g. fashion-mnist")
    parser.add_argument("--train-subset", type=int, default=0, help="training images used (0: the preset's)")
    parser.add_argument("--epochs", nargs=2, type=int, metavar=("PRETRAIN", "FINETUNE"), help="instead of the preset's")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="JSON", help="tabulate saved summaries; run nothing")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.merge:
        records = merge(args.merge)
        title = f"criteria on small_cnn, merged from {len(args.merge)} summaries"
    else:
        records = run(args)
        data = args.data or PRESETS[args.preset]["data"]["name"]
        title = (
            f"criteria on small_cnn / {data} (preset {args.preset}), {args.ranking} ranking, target 20% MACs, "
            f"{len(args.seeds)} seed(s), {time.perf_counter() - start:.0f} s"
        )
        summary = args.output_dir / "criteria-summary.json"
        summary.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(summary, json.dumps(records, indent=1))
    Console(width=160).print(table(records, title))
    if args.markdown:
        write_text_atomic(args.markdown, markdown(records, title))


if __name__ == "__main__":
    main()
