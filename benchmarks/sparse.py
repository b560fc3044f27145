"""Unstructured and low-rank pruning side by side, each with DPM's oneshot / sp / sp+sr.

Usage:
    python benchmarks/sparse.py                          # CPU preset: digits / small_cnn, 50/80/90/95%
    python benchmarks/sparse.py --quick                  # two sparsities, oneshot and sp+sr, fewer epochs
    python benchmarks/sparse.py --data fashion_mnist --train-subset 10000

Rows:
- magnitude (Han et al.): from the dense base, a cubic schedule (Zhu & Gupta) to the target over the
  first 60% of fine-tuning, pruning every tenth of that window; weights are handed to the decay
  engine, whose policy zeroes them (oneshot), decays them in N steps (sp) or also releases them (sp+sr,
  refilled with the next-smallest at the next pruning step).
- snip (Lee et al.): from the initial weights, |g*w| on a few batches, pruned before training from
  scratch (sp: the selected weights decay over the first N steps; sp+sr: releases are refilled with
  the next-smallest score while selection is allowed).
- rigl (Evci et al.): from scratch with ERK densities (RigL owns its mask: no policy).
- lrpet vs channels: LRPET from scratch at a rank fraction (projection every step, cut or DPM rank
  decay), factored at the end; then channel pruning (l1 filters + the same policy) of the dense base to the
  MACs the factored model has. MACs are measured (count_cost) on the factored / compacted models.

The dense base trains once per seed; every row starts from it (magnitude, channels) or from its
initial weights (snip, rigl, lrpet). Results go to benchmarks/results/sparse_<preset>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from decayprune import Pruner, PruneSettings, count_cost, create_model, evaluate, load_dataset
from decayprune.config import DecaySettings
from decayprune.data import TensorLoader
from decayprune.decay import DecayEngine
from decayprune.files import write_json_atomic, write_text_atomic
from decayprune.lowrank import LowRankProjector, factorize
from decayprune.sparse import ElementMasks, MagnitudePruning, RigL, select_smallest, snip_scores

Hook = Callable[[int], None]


def loaders(args: argparse.Namespace, seed: int) -> tuple[TensorLoader, TensorLoader]:
    splits = load_dataset(args.data, seed=seed, train_subset=args.train_subset, test_subset=args.test_subset)
    train = TensorLoader(splits.train_images, splits.train_labels, 64, shuffle=True, seed=seed)
    test = TensorLoader(splits.test_images, splits.test_labels, 256, shuffle=False)
    return train, test


def train(
    model: nn.Module,
    loader: TensorLoader,
    epochs: int,
    lr: float,
    *,
    after_backward: Hook | None = None,
    after_step: Hook | None = None,
    bind: Callable[[torch.optim.Optimizer], None] | None = None,
) -> int:
    """SGD (momentum 0.9, wd 5e-4, cosine) for ``epochs``; returns the steps taken."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    if bind is not None:
        bind(opt)
    total = epochs * len(loader)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(total, 1))
    step = 0
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            step += 1
            if after_backward:
                after_backward(step)
            opt.step()
            sched.step()
            if after_step:
                after_step(step)
    return step


def top1(model: nn.Module, test: TensorLoader) -> float:
    return float(evaluate(model, test, topk=(1,))["top1"])


def decay(policy: str, n: int) -> DecaySettings:
    """N = ``n`` and a cool-down of 2N; the self-rectifying window and thresholds are the library's
    (an earlier window of 3 released about 2.5x as many weights and cost up to 7 points at 95%)."""
    return DecaySettings(policy=policy, steps=n, cooldown=2 * n)


def run_magnitude(base: nn.Module, data: tuple, args: argparse.Namespace, policy: str, s: float) -> dict:
    train_loader, test = data
    model = copy.deepcopy(base)
    units = ElementMasks(model)
    engine = DecayEngine(units, decay(policy, args.decay_steps))
    total = args.finetune_epochs * len(train_loader)
    end = int(0.6 * total)
    prune = MagnitudePruning(units, engine, target=s, begin=1, end=end, kind="cubic", every=max(1, end // 10))
    engine.release_until = end

    def bind(opt: torch.optim.Optimizer) -> None:
        engine.optimizer = opt

    def after_step(step: int) -> None:
        engine.after_step(step)
        prune.after_step(step)

    steps = train(
        model,
        train_loader,
        args.finetune_epochs,
        args.lr_finetune,
        bind=bind,
        after_backward=lambda _s: engine.after_backward(),
        after_step=after_step,
    )
    engine.finish(steps)
    return {"top1": top1(model, test), "sparsity": units.sparsity(), "releases": engine.releases}


def run_snip(init: nn.Module, data: tuple, args: argparse.Namespace, policy: str, s: float) -> dict:
    train_loader, test = data
    model = copy.deepcopy(init)
    units = ElementMasks(model)
    batches = [b for _, b in zip(range(args.snip_batches), train_loader)]
    model.eval()  # inference-mode BN for the sensitivity pass
    scores = snip_scores(units, model, batches, F.cross_entropy)
    engine = DecayEngine(units, decay(policy, args.decay_steps))
    last_start = int(0.5 * args.scratch_epochs * len(train_loader))
    engine.release_until = last_start
    state: dict[str, Any] = {}

    def bind(opt: torch.optim.Optimizer) -> None:
        engine.optimizer = opt
        engine.start(select_smallest(units, scores, s), step=0)
        state["opt"] = opt

    def after_step(step: int) -> None:
        released = engine.after_step(step)
        if released and step <= last_start:  # the base method picks replacements: next-smallest scores
            engine.start(select_smallest(units, scores, s, committed=engine.committed()), step)

    steps = train(
        model,
        train_loader,
        args.scratch_epochs,
        args.lr_pretrain,
        bind=bind,
        after_backward=lambda _s: engine.after_backward(),
        after_step=after_step,
    )
    engine.finish(steps)
    return {"top1": top1(model, test), "sparsity": units.sparsity(), "releases": engine.releases}


def run_rigl(init: nn.Module, data: tuple, args: argparse.Namespace, s: float) -> dict:
    train_loader, test = data
    model = copy.deepcopy(init)
    units = ElementMasks(model)
    total = args.scratch_epochs * len(train_loader)
    holder: dict[str, RigL] = {}

    def bind(opt: torch.optim.Optimizer) -> None:
        holder["rigl"] = RigL(
            units, density=1 - s, t_end=int(0.75 * total), delta_t=max(1, total // 20), alpha=0.3, optimizer=opt
        )

    train(
        model,
        train_loader,
        args.scratch_epochs,
        args.lr_pretrain,
        bind=bind,
        after_backward=lambda k: holder["rigl"].after_backward(k),
        after_step=lambda k: holder["rigl"].after_step(k),
    )
    return {"top1": top1(model, test), "sparsity": units.sparsity(), "releases": 0}


def run_lrpet(init: nn.Module, data: tuple, args: argparse.Namespace, policy: str, example: torch.Tensor) -> dict:
    train_loader, test = data
    model = copy.deepcopy(init)
    n = args.decay_steps if policy != "oneshot" else 0
    proj = LowRankProjector(
        model, args.rank_fraction, example_inputs=example, decay_steps=n, ignored_layers=["classifier"]
    )
    proj.start(0)
    train(model, train_loader, args.scratch_epochs, args.lr_pretrain, after_step=proj.after_step)
    proj.project_(step=10**9)
    factorize(model, proj.ranks)
    return {"top1": top1(model, test), "macs": count_cost(model, example).macs, "releases": 0}


def run_channels(
    base: nn.Module, data: tuple, args: argparse.Namespace, policy: str, fraction: float, example: torch.Tensor
) -> dict:
    train_loader, test = data
    model = copy.deepcopy(base)
    total = args.finetune_epochs * len(train_loader)
    settings = PruneSettings(
        method="l1", target_macs_fraction=fraction, iterative_steps=3, decay=decay(policy, args.decay_steps)
    )
    pruner = Pruner(model, example, settings, total_steps=total, steps_per_epoch=len(train_loader))
    train(
        model,
        train_loader,
        args.finetune_epochs,
        args.lr_finetune,
        bind=pruner.bind,
        after_backward=lambda _s: pruner.after_backward(),
        after_step=lambda _s: pruner.after_step(),
    )
    pruner.compact()
    return {"top1": top1(model, test), "macs": count_cost(model, example).macs, "releases": pruner.engine.releases}


def plot(rows: list[dict], dense: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in ("magnitude", "snip", "rigl") if any(r["method"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.2), sharey=True, squeeze=False)
    for ax, method in zip(axes[0], methods):
        for policy in sorted({r["policy"] for r in rows if r["method"] == method}):
            pts = sorted((r["target"], r["top1"]) for r in rows if r["method"] == method and r["policy"] == policy)
            ax.plot([p[0] * 100 for p in pts], [p[1] for p in pts], marker="o", label=policy)
        ax.axhline(dense, color="grey", linestyle=":", label="dense")
        ax.set_title(method)
        ax.set_xlabel("sparsity %")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("top-1 %")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(result: dict) -> str:
    a = result["args"]
    lines = [
        f"# {result['title']}",
        "",
        f"command: `{result['command']}`",
        "",
        f"dense base top-1: {result['dense_top1']:.2f}%",
        "",
        "| method | policy | target sparsity | measured sparsity | top-1 % | releases |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["sparse"]:
        lines.append(
            f"| {r['method']} | {r['policy']} | {100 * r['target']:.0f}% | {100 * r['sparsity']:.1f}% | "
            f"{r['top1']:.2f} | {r['releases']} |"
        )
    lines += ["", "| low rank vs channels | policy | MACs % of dense | top-1 % |", "|---|---|---|---|"]
    for r in result["lowrank"]:
        lines.append(
            f"| {r['method']} | {r['policy']} | {100 * r['macs'] / result['dense_macs']:.1f}% | {r['top1']:.2f} |"
        )
    lines += [
        "",
        f"wall time: {result['wall_s']:.0f} s",
        "",
        f"Budgets: magnitude and channels fine-tune {a['finetune_epochs']} epochs from the dense base "
        f"({a['pretrain_epochs']} epochs); snip, rigl and lrpet train {a['scratch_epochs']} epochs from its "
        "initial weights. Sparsity counts every conv / linear weight. One seed.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--test-subset", type=int, default=None)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8, 0.9, 0.95])
    parser.add_argument("--policies", nargs="+", default=["oneshot", "sp", "sp+sr"])
    parser.add_argument("--pretrain-epochs", type=int, default=12)
    parser.add_argument("--finetune-epochs", type=int, default=6)
    parser.add_argument("--scratch-epochs", type=int, default=12)
    parser.add_argument("--lr-pretrain", type=float, default=0.05)
    parser.add_argument("--lr-finetune", type=float, default=0.01)
    parser.add_argument("--decay-steps", type=int, default=20)
    parser.add_argument("--snip-batches", type=int, default=3)
    parser.add_argument("--rank-fraction", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="50/90%%, oneshot and sp+sr, 6/3/6 epochs")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    if args.quick:
        args.sparsities, args.policies = [0.5, 0.9], ["oneshot", "sp+sr"]
        args.pretrain_epochs, args.finetune_epochs, args.scratch_epochs = 6, 3, 6
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = loaders(args, args.seed)
    x0 = next(iter(data[0]))[0]
    torch.manual_seed(args.seed)
    init = create_model("small_cnn", num_classes=10, in_channels=x0.shape[1])
    example = torch.zeros(1, *x0.shape[1:])
    base = copy.deepcopy(init)
    train(base, data[0], args.pretrain_epochs, args.lr_pretrain)
    dense = top1(base, data[1])
    dense_macs = count_cost(base, example).macs
    print(f"dense base: top-1 {dense:.2f}%, {dense_macs:,} MACs")
    rows: list[dict] = []
    for s in args.sparsities:
        for policy in args.policies:
            for method, run in (("magnitude", run_magnitude), ("snip", run_snip)):
                torch.manual_seed(args.seed)
                row = {
                    "method": method,
                    "policy": policy,
                    "target": s,
                    **run(base if method == "magnitude" else init, data, args, policy, s),
                }
                rows.append(row)
                print(json.dumps(row))
        torch.manual_seed(args.seed)
        row = {"method": "rigl", "policy": "-", "target": s, **run_rigl(init, data, args, s)}
        rows.append(row)
        print(json.dumps(row))
    low: list[dict] = []
    for policy in args.policies:
        torch.manual_seed(args.seed)
        if policy != "sp+sr":  # self-rectifying is not offered for ranks
            lr_row = {
                "method": f"lrpet r={args.rank_fraction}",
                "policy": policy,
                **run_lrpet(init, data, args, policy, example),
            }
            low.append(lr_row)
            print(json.dumps(lr_row))
        if not low:
            continue  # the channel row needs the MACs of an lrpet row
        torch.manual_seed(args.seed)
        ch_row = {
            "method": "l1 channels",
            "policy": policy,
            **run_channels(base, data, args, policy, low[0]["macs"] / dense_macs, example),
        }
        low.append(ch_row)
        print(json.dumps(ch_row))
    preset = "quick" if args.quick else "cpu"
    result = {
        "title": f"sparse / low-rank benchmark ({preset}: {args.data}, small_cnn, seed {args.seed})",
        "command": "python benchmarks/sparse.py" + (" --quick" if args.quick else ""),
        "args": vars(args),
        "dense_top1": dense,
        "dense_macs": dense_macs,
        "sparse": rows,
        "lowrank": low,
        "wall_s": time.perf_counter() - started,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"sparse_{preset}.json", result)
    write_text_atomic(out / f"sparse_{preset}.md", markdown(result))
    plot(rows, dense, out / f"sparse_{preset}.png")
    print(markdown(result))


if __name__ == "__main__":
    main()
