"""DPM at its defaults against its base method and Torch-Pruning's own one-shot pruning, paired by seed.

Usage:
    python benchmarks/defaults.py                          # CPU preset: Fashion-MNIST, 3 archs, 20/40% MACs, 5 seeds
    python benchmarks/defaults.py --preset quick           # one arch, one budget, 2 seeds, small subsets (4 min)
    python benchmarks/defaults.py --preset gpu --data-dir /data/cifar-10-batches-py
    python benchmarks/defaults.py --archs small_cnn --budgets 0.2 --seeds 0 1 2 --methods depgraph iterative
    python benchmarks/defaults.py --jobs 2                 # (arch, seed) blocks in 2 processes
    python benchmarks/defaults.py --from-json a.json b.json --tag all   # one table from earlier invocations
    python benchmarks/defaults.py --variants sp+sr --prune-set decay.on_release=restore --tag restore \
        --against runs/defaults/defaults-cpu.json     # a study, paired by seed with the defaults' runs

What a user writes is all that is set: ``method``, ``target_macs_fraction`` and ``decay.policy``
(every other pruning setting, N and the SR thresholds included, is decayprune's default). For
every (arch, seed) one base model is trained once; every variant starts from its weights and gets
the same fine-tuning epochs:

* ``tp-random`` and ``tp-l2``: Torch-Pruning's ``MetaPruner`` (random and group-L2 importance,
  uniform per-layer ratios, the classifier kept) raised in steps of 1% until the MACs target is
  met, then fine-tuned;
* ``<method> oneshot / sp / sp+sr``: ``decayprune prune`` with that method and policy.

Printed: top-1 (mean ± std over seeds) and MACs per variant, and the paired differences that
decide the question (sp - oneshot, sp+sr - sp, sp+sr - tp-random) as mean ± standard error over
seeds. Written to ``--output-dir``: ``defaults-<preset>.json`` (every run), ``.md`` (the tables)
and ``.png`` (top-1 against MACs per variant).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch_pruning as tp
import yaml
from rich.console import Console
from rich.table import Table

import policy_runs
from decayprune.config import RunConfig, load_config
from decayprune.files import write_text_atomic
from decayprune.jobs import run_prune_job, run_train_job
from decayprune.jobs.build import example_input, load_data, load_weights, make_loaders, model_for_data
from decayprune.measure import count_cost
from decayprune.train import Trainer, set_seed

PRESETS: dict[str, dict[str, Any]] = {
    # Three structurally different archs (plain, residual, concatenating) in about an hour on 2 cores.
    "cpu": {
        "data": {"name": "fashion-mnist", "train_subset": 6000},
        "pretrain": {"epochs": 4, "batch_size": 128, "lr": 0.05, "schedule": "cosine"},
        "finetune": {"epochs": 2, "batch_size": 128, "lr": 0.01, "schedule": "cosine"},
        "archs": ["small_cnn", "resnet20", "concat_cnn"],
        "budgets": [0.2, 0.4],
        "seeds": [0, 1, 2, 3, 4],
    },
    # The suite the defaults of this release were chosen on (twice the images: about 2 h for two archs).
    "cpu-12k": {
        "data": {"name": "fashion-mnist", "train_subset": 12000},
        "pretrain": {"epochs": 3, "batch_size": 128, "lr": 0.05, "schedule": "cosine"},
        "finetune": {"epochs": 2, "batch_size": 128, "lr": 0.01, "schedule": "cosine"},
        "archs": ["small_cnn", "resnet20"],
        "budgets": [0.2, 0.4],
        "seeds": [0, 1, 2, 3, 4],
    },
    "quick": {
        "data": {"name": "fashion-mnist", "train_subset": 4000, "test_subset": 2000},
        "pretrain": {"epochs": 3, "batch_size": 128, "lr": 0.05, "schedule": "cosine"},
        "finetune": {"epochs": 3, "batch_size": 128, "lr": 0.01, "schedule": "cosine"},
        "archs": ["small_cnn"],
        "budgets": [0.3],
        "seeds": [0, 1],
    },
    # What the tests run: the embedded digits, a few steps (checks the wiring, not the question).
    "smoke": {
        "data": {"name": "digits", "train_subset": 256, "test_subset": 128},
        "pretrain": {"epochs": 1, "batch_size": 64, "lr": 0.05},
        "finetune": {"epochs": 2, "batch_size": 64, "lr": 0.01},
        "archs": ["small_cnn"],
        "budgets": [0.5],
        "seeds": [0, 1],
    },
    "gpu": {
        "data": {"name": "cifar10"},
        "pretrain": {"epochs": 160, "batch_size": 128, "lr": 0.1, "schedule": "step", "milestones": [80, 120]},
        "finetune": {"epochs": 60, "batch_size": 128, "lr": 0.01, "schedule": "cosine"},
        "archs": ["resnet56", "vgg16", "mobilenetv2_cifar"],
        "budgets": [0.2, 0.4],
        "seeds": [0, 1, 2, 3, 4],
    },
}
#: Training settings shared by every phase of a preset. Each phase evaluates on the test set only at its
#: end (``eval_every`` is set to its epochs): only final top-1 is reported, and on the CPU presets one pass
#: over the 10,000 test images costs 0.5-0.85 of a training epoch (cProfile of two small_cnn runs, 2026-12-03).
COMMON = {"weight_decay": 5e-4}
TP_IMPORTANCE = {
    "tp-random": tp.importance.RandomImportance,
    "tp-l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
}
POLICIES = ("oneshot", "sp", "sp+sr")
Record = dict[str, Any]


def run_config(
    args: argparse.Namespace, arch: str, budget: float, seed: int, name: str, prune: dict, weights: Path | None = None
) -> RunConfig:
    """The run config of one variant: the preset's data and schedules, this arch, seed and prune section
    (``weights``: start from this base model instead of training one)."""
    preset = PRESETS[args.preset]
    train = {**COMMON, "seed": seed, "device": args.device}
    data = dict(preset["data"], **({"data_dir": str(args.data_dir)} if args.data_dir else {}))
    finetune = dict(preset["finetune"], **({"epochs": args.finetune_epochs} if args.finetune_epochs else {}))
    values = {
        "name": name,
        "output_dir": str(args.output_dir),
        "data": data,
        "model": {"name": arch, **({"weights": str(weights)} if weights else {})},
        "pretrain": {**preset["pretrain"], **train, "eval_every": preset["pretrain"]["epochs"]},
        "finetune": {**finetune, **train, "eval_every": finetune["epochs"]},
        "prune": {"target_macs_fraction": budget, **prune},
    }
    return load_config(None, values=values)


def classifier_layers(model: nn.Module) -> list[nn.Module]:
    """The last ``Linear`` (the classifier), which Torch-Pruning must keep whole like decayprune does."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1:]


def tp_prune_to_macs(model: nn.Module, example: torch.Tensor, fraction: float, importance: Any) -> float:
    """Prune ``model`` in place with Torch-Pruning in 1% steps of the per-layer ratio until its MACs are at most
    ``fraction`` of the start. Returns the reached fraction."""
    base = count_cost(model, example).macs
    steps = 100
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=importance,
        pruning_ratio=1.0,
        iterative_steps=steps,
        ignored_layers=classifier_layers(model),
    )
    reached = 1.0
    for _ in range(steps):
        pruner.step()
        reached = count_cost(model, example).macs / base
        if reached <= fraction:
            break
    return reached


def tp_run(cfg: RunConfig, base_weights: Path, variant: str, budget: float, seed: int) -> Record:
    """Torch-Pruning one-shot from the base weights, then the same fine-tuning as decayprune's runs."""
    splits = load_data(cfg)
    model = model_for_data(cfg.model, splits, seed=seed)
    load_weights(model, base_weights)
    example = example_input(splits)
    train_loader, test_loader = make_loaders(splits, cfg)
    set_seed(seed)
    base_top1 = float(json.loads((base_weights.parent / "result.json").read_text())["top1"])  # the base's last test
    start = time.perf_counter()
    reached = tp_prune_to_macs(model.eval(), example, budget, TP_IMPORTANCE[variant]())
    params = sum(p.numel() for p in model.parameters())
    trainer = Trainer(model.train(), train_loader, test_loader, cfg.finetune, progress=False)
    final = trainer.fit().final  # the test metrics after the last step
    return {
        "variant": variant,
        "macs_pct": 100.0 * reached,
        "params": params,
        "base_top1": base_top1,
        "top1": float(final["top1"]),
        "releases": 0,
        "wall_s": time.perf_counter() - start,
    }


def ours_run(cfg: RunConfig, method: str, policy: str) -> Record:
    record = run_prune_job(cfg, progress=False, console=Console(quiet=True), resume="auto")
    return {
        "variant": f"{method} {policy}",
        "macs_pct": record["macs_pct"],
        "params": record["final"]["params"],
        "base_top1": record["base"]["top1"],
        "top1": record["final"]["top1"],
        "releases": record["releases"],
        "wall_s": record["wall_time_s"],
    }


def base_weights(args: argparse.Namespace, arch: str, seed: int) -> Path:
    """The base model of (arch, seed), trained once with the preset's pretrain schedule (reused when present)."""
    preset = PRESETS[args.preset]
    data = dict(preset["data"], **({"data_dir": str(args.data_dir)} if args.data_dir else {}))
    train = {**preset["pretrain"], **COMMON, "seed": seed, "device": args.device}
    train["eval_every"] = train["epochs"]
    values = {"name": f"defaults-{args.preset}-{arch}-s{seed}-base", "output_dir": str(args.output_dir)}
    cfg = load_config(None, values={**values, "data": data, "model": {"name": arch}, "train": train})
    weights = cfg.run_dir / "model.safetensors"
    if not weights.is_file():
        run_train_job(cfg, resume="auto", progress=False, console=Console(quiet=True))
    return weights


def prune_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["decay.steps=50", ...]`` as a nested dict of YAML values (merged into every prune section of ours)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"--prune-set takes KEY=VALUE (e.g. decay.steps=50), got {pair!r}")
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return out


def run_block(args: argparse.Namespace, arch: str, seed: int) -> list[Record]:
    """Every (budget, variant) of one (arch, seed), all from the same base model (trained once)."""
    console = Console()
    records: list[Record] = []
    overrides = prune_overrides(args.prune_set)
    tag = f"-{args.tag}" if args.tag else ""
    weights = base_weights(args, arch, seed)
    for budget in args.budgets:
        where = f"{arch}-{budget:g}-s{seed}"
        for method in args.methods:
            for policy in [p for p in POLICIES if p in args.variants]:
                name = f"defaults-{args.preset}-{where}-{method}-{policy.replace('+', '-')}{tag}"
                prune = policy_runs.merge({"method": method, "decay": {"policy": policy}}, overrides)
                rec = ours_run(run_config(args, arch, budget, seed, name, prune, weights), method, policy)
                records.append({"arch": arch, "budget": budget, "seed": seed, **rec})
                console.print(f"{where} {rec['variant']}: top-1 {rec['top1']:.2f}, MACs {rec['macs_pct']:.1f}%")
        for variant in [v for v in TP_IMPORTANCE if v in args.variants]:
            cfg = run_config(args, arch, budget, seed, f"defaults-{args.preset}-{where}-{variant}{tag}", {})
            rec = tp_run(cfg, weights, variant, budget, seed)
            records.append({"arch": arch, "budget": budget, "seed": seed, **rec})
            console.print(f"{where} {variant}: top-1 {rec['top1']:.2f}, MACs {rec['macs_pct']:.1f}%")
    return records


def _run_block_in_worker(args: argparse.Namespace, arch: str, seed: int) -> list[Record]:
    torch.set_num_threads(1)  # --jobs workers share the cores: one thread each
    return run_block(args, arch, seed)


def run_suite(args: argparse.Namespace) -> list[Record]:
    """Every (arch, seed) block, in ``args.jobs`` worker processes (1: in this process), in a fixed order."""
    blocks = [(arch, seed) for arch in args.archs for seed in args.seeds]
    if args.jobs <= 1:
        return [rec for arch, seed in blocks for rec in run_block(args, arch, seed)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_run_block_in_worker, args, arch, seed) for arch, seed in blocks]
        return [rec for future in futures for rec in future.result()]


def merge_runs(paths: list[Path]) -> tuple[list[Record], float]:
    """The runs of several ``defaults-*.json`` files, one per (arch, budget, seed, variant) (the last file wins),
    and their summed wall time."""
    merged: dict[tuple, Record] = {}
    wall = 0.0
    for path in paths:
        tree = json.loads(Path(path).read_text())
        wall += float(tree.get("wall_s", 0.0))
        for rec in tree["runs"]:
            merged[(rec["arch"], rec["budget"], rec["seed"], rec["variant"])] = rec
    order = sorted(merged, key=lambda k: (k[0], k[1], k[3], k[2]))
    return [merged[k] for k in order], wall


def paired(records: list[Record], arch: str, budget: float, a: str, b: str) -> tuple[float, float, int]:
    """Mean and standard error over seeds of ``top1(a) - top1(b)`` (seeds that ran both)."""
    by = {(r["variant"], r["seed"]): r["top1"] for r in records if r["arch"] == arch and r["budget"] == budget}
    diffs = [by[(a, s)] - by[(b, s)] for (v, s) in by if v == a and (b, s) in by]
    if not diffs:
        return float("nan"), float("nan"), 0
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    return statistics.mean(diffs), se, len(diffs)


def tables(records: list[Record], methods: list[str]) -> tuple[Table, Table]:
    """The per-variant table and the paired-difference table."""
    cells = Table(title="top-1 % and MACs % per variant (mean ± std over seeds)")
    for col in ("arch", "MACs target", "variant", "MACs %", "top-1 %", "releases", "seeds"):
        cells.add_column(col)
    keys = dict.fromkeys((r["arch"], r["budget"], r["variant"]) for r in records)
    for arch, budget, variant in keys:
        rows = [r for r in records if (r["arch"], r["budget"], r["variant"]) == (arch, budget, variant)]
        cells.add_row(
            arch,
            f"{budget:.0%}",
            variant,
            policy_runs.mean_std([r["macs_pct"] for r in rows]),
            policy_runs.mean_std([r["top1"] for r in rows]),
            policy_runs.mean_std([float(r["releases"]) for r in rows]),
            str(len(rows)),
        )
    diffs = Table(title="paired differences of top-1 (points, mean ± standard error over seeds)")
    for col in ("arch", "MACs target", "method", "sp - oneshot", "sp+sr - sp", "sp+sr - tp-random", "sp+sr - tp-l2"):
        diffs.add_column(col)
    for arch, budget in dict.fromkeys((r["arch"], r["budget"]) for r in records):
        for method in methods:
            pairs = [
                (f"{method} sp", f"{method} oneshot"),
                (f"{method} sp+sr", f"{method} sp"),
                (f"{method} sp+sr", "tp-random"),
                (f"{method} sp+sr", "tp-l2"),
            ]
            shown = []
            for a, b in pairs:
                mean, se, _ = paired(records, arch, budget, a, b)
                shown.append(f"{mean:+.2f} ± {se:.2f}")
            diffs.add_row(arch, f"{budget:.0%}", method, *shown)
    return cells, diffs


def against_table(records: list[Record], baseline: list[Record], label: str) -> Table:
    """Per (arch, budget, variant): top-1 minus the same variant's in ``baseline``, paired by seed."""
    table = Table(title=f"minus the same variant in {label} (points, mean ± standard error over seeds)")
    for col in ("arch", "MACs target", "variant", "seeds", "releases (baseline)", "top-1 %", "minus baseline"):
        table.add_column(col)
    base = {(r["arch"], r["budget"], r["seed"], r["variant"]): r for r in baseline}
    for arch, budget, variant in dict.fromkeys((r["arch"], r["budget"], r["variant"]) for r in records):
        pairs = [
            (r, base[key])
            for r in records
            if (r["arch"], r["budget"], r["variant"]) == (arch, budget, variant)
            and (key := (arch, budget, r["seed"], variant)) in base
        ]
        if not pairs:
            continue
        diffs = [r["top1"] - b["top1"] for r, b in pairs]
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
        releases = statistics.mean(r["releases"] for r, _ in pairs), statistics.mean(b["releases"] for _, b in pairs)
        table.add_row(
            arch,
            f"{budget:.0%}",
            variant,
            str(len(pairs)),
            f"{releases[0]:.1f} ({releases[1]:.1f})",
            f"{statistics.mean(r['top1'] for r, _ in pairs):.2f}",
            f"{statistics.mean(diffs):+.2f} ± {se:.2f}",
        )
    return table


def table_markdown(table: Table) -> str:
    """A rich table as a Markdown table."""
    heads = [str(c.header) for c in table.columns]
    rows = list(zip(*[list(c.cells) for c in table.columns], strict=True))
    lines = [f"**{table.title}**", "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def plot(records: list[Record], path: Path) -> None:
    """Top-1 against MACs %, one panel per arch, one marker series per variant (means over seeds)."""
    from matplotlib.figure import Figure

    archs = list(dict.fromkeys(r["arch"] for r in records))
    fig = Figure(figsize=(4.5 * len(archs), 3.6))
    for i, arch in enumerate(archs):
        ax = fig.add_subplot(1, len(archs), i + 1)
        for variant in dict.fromkeys(r["variant"] for r in records):
            points = []
            for budget in sorted({r["budget"] for r in records}):
                rows = [r for r in records if (r["arch"], r["budget"], r["variant"]) == (arch, budget, variant)]
                if rows:
                    points.append(
                        (statistics.mean(r["macs_pct"] for r in rows), statistics.mean(r["top1"] for r in rows))
                    )
            ax.plot(*zip(*points, strict=True), marker="o", label=variant)
        ax.set_title(arch)
        ax.set_xlabel("MACs % of the base")
        ax.set_ylabel("top-1 %")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> list[Record]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--archs", nargs="+", default=None, help="default: the preset's")
    parser.add_argument(
        "--budgets", nargs="+", type=float, default=None, help="MACs fractions kept; default: the preset's"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the preset's")
    parser.add_argument("--methods", nargs="+", default=["depgraph"], help="base methods run under oneshot, sp, sp+sr")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--jobs", type=int, default=1, help="(arch, seed) blocks run in this many processes, one thread each"
    )
    parser.add_argument("--output-dir", type=Path, default=Path("runs/defaults"))
    parser.add_argument("--prune-set", nargs="*", default=[], metavar="KEY=VALUE", help="prune settings of ours")
    parser.add_argument(
        "--finetune-epochs", type=int, default=None, help="instead of the preset's fine-tune length (needs --tag)"
    )
    parser.add_argument("--tag", default="", help="suffix of our run names and of the output files (with --prune-set)")
    parser.add_argument("--skip-tp", action="store_true", help="leave out Torch-Pruning's runs")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=[*POLICIES, *TP_IMPORTANCE],
        default=[*POLICIES, *TP_IMPORTANCE],
        help="which variants run (default: all; e.g. only tp-random to add it to earlier runs)",
    )
    parser.add_argument(
        "--from-json",
        nargs="+",
        type=Path,
        default=None,
        metavar="JSON",
        help="run nothing: the tables and plot of the runs in these files of earlier invocations (a later file "
        "wins for the same arch, budget, seed and variant); --tag names the output",
    )
    parser.add_argument(
        "--against",
        type=Path,
        default=None,
        metavar="JSON",
        help="also tabulate each variant minus the same variant in this file of an earlier invocation, paired by "
        "seed (e.g. a --prune-set study against the defaults)",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs: got {args.jobs}; allowed: 1 or more processes")
    if args.finetune_epochs is not None and (args.finetune_epochs < 1 or not args.tag):
        parser.error("--finetune-epochs: a positive epoch count, with a --tag that keeps its runs apart")
    if args.skip_tp:  # the older spelling of leaving both tp-* variants out
        args.variants = [v for v in args.variants if v not in TP_IMPORTANCE]
    preset = PRESETS[args.preset]
    args.archs = args.archs or preset["archs"]
    args.budgets = args.budgets or preset["budgets"]
    args.seeds = args.seeds if args.seeds is not None else preset["seeds"]
    start = time.perf_counter()
    if args.from_json:
        records, wall = merge_runs(args.from_json)
        args.archs = list(dict.fromkeys(r["arch"] for r in records))
        args.methods = list(dict.fromkeys(r["variant"].split()[0] for r in records if " " in r["variant"]))
    else:
        records = run_suite(args)
        wall = time.perf_counter() - start
    cells, diffs = tables(records, args.methods)
    console = Console()
    console.print(cells)
    console.print(diffs)
    archs = "" if args.archs == preset["archs"] else "-" + "-".join(args.archs)
    stem = args.output_dir / f"defaults-{args.preset}{archs}{'-' + args.tag if args.tag else ''}"
    write_text_atomic(stem.with_suffix(".json"), json.dumps({"wall_s": wall, "runs": records}, indent=1))
    command = "python benchmarks/defaults.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = f"command: `{command.strip()}` ({wall:.0f} s)\n\n{table_markdown(cells)}\n\n{table_markdown(diffs)}\n"
    if args.against is not None:
        versus = against_table(records, merge_runs([args.against])[0], args.against.name)
        console.print(versus)
        text += f"\n{table_markdown(versus)}\n"
    write_text_atomic(stem.with_suffix(".md"), text)
    plot(records, stem.with_suffix(".png"))
    console.print(f"wall time {wall:.0f} s; tables in {stem}.md, plot {stem}.png")
    return records


if __name__ == "__main__":
    main()
