"""Speed that users feel: prune to 50% by a MACs target vs by a latency target, then time both.

Usage:
    python benchmarks/latency.py [--models resnet50,mobilenetv2,vit] [--threads 1,2] [--rounds 7]
        [--repeats 10] [--target 0.5] [--image-size 64] [--sweep]

Per model (random weights, as in the issue: the latency of a dense network does not depend on
its values), DepGraph (group-norm ranking, oneshot) prunes one copy to ``--target`` of the MACs
(``target_macs_fraction``) and, per thread count, another to ``--target`` of the latency
(``target_latency_fraction``, a per-layer table measured on this CPU at that thread count,
batch 1). Each copy is compacted and timed against the base model in interleaved rounds
(:func:`decayprune.measure.compare_latency`). The table gives the MACs ratio (base / pruned),
the latency speed-up (median and IQR over rounds), their quotient (goal >= 0.8), the measured
latency fraction (1 / speed-up of the medians; goal for the latency target: within 10% of it) and,
for the latency target, the table's prediction and the Pruner's own check after compaction (the
fastest of 30 passes of the pruned model against the table's base time, the estimator the table
uses: contention adds time per pass, which weighs more on the faster pruned model's median).

Models: ``resnet50`` is the ResNet-50 layout of ``dpm_overhead.py`` (3-4-6-3 bottlenecks, 25.6M
parameters) at ``--image-size`` (default 64, so a run fits a small CPU); ``mobilenetv2`` the
registry's ``mobilenetv2_cifar`` at 32x32; ``vit`` a transformers ViT (6 layers, hidden 192, 3 heads,
MLP 768, 32x32 images in 4x4 patches: 65 tokens; only its MLP hidden units are prunable, attention is
refused). ``--sweep`` first times a 3x3 and a 1x1 convolution over widths 56..72 (the CPU
width-multiple question). On a shared machine timings are noisy: read the IQRs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn
from rich.console import Console
from rich.table import Table

from decayprune import Pruner, PruneSettings, create_model
from decayprune.measure import compare_latency, count_cost
from decayprune.measure.latency_table import TimingSetup, time_call
from dpm_overhead import ResNet50Like


class _ViTLogits(nn.Module):
    """transformers' ViT classifier returning the logits tensor."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import ViTConfig, ViTForImageClassification

        config = ViTConfig(
            image_size=32,
            patch_size=4,
            num_channels=3,
            hidden_size=192,
            num_hidden_layers=6,
            num_attention_heads=3,
            intermediate_size=768,
            num_labels=10,
        )
        self.vit = ViTForImageClassification(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(pixel_values=x).logits


def models(image_size: int) -> dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]]:
    return {
        "resnet50": (lambda: ResNet50Like(num_classes=1000), (1, 3, image_size, image_size)),
        "mobilenetv2": (lambda: create_model("mobilenetv2_cifar", num_classes=10, in_channels=3), (1, 3, 32, 32)),
        "vit": (_ViTLogits, (1, 3, 32, 32)),
    }


def prune(
    build: Callable[[], nn.Module], x: torch.Tensor, budget: dict, threads: int, width_multiple: int = 1
) -> tuple[nn.Module, float | None, float | None, float]:
    """A compacted copy pruned under ``budget``; the table's predicted latency fraction; the Pruner's own
    check after compaction (fastest loops, as the table); seconds spent."""
    torch.manual_seed(0)
    model = build().eval()
    start = time.perf_counter()
    settings = PruneSettings(
        method="depgraph",
        iterative_steps=1,
        decay={"policy": "oneshot"},
        latency={"device": "cpu", "threads": threads},
        width_multiple=width_multiple,
        **budget,
    )
    pruner = Pruner(model, x, settings, total_steps=4)
    pruner.after_step()  # the one selection point
    ctx = pruner.context
    predicted = ctx.committed_cost() / ctx.base_cost if ctx.cost.kind == "latency" else None
    seconds = time.perf_counter() - start
    pruner.compact()
    return model.eval(), predicted, pruner.budget_result.get("measured_fraction"), seconds


def sweep(console: Console) -> None:
    setup = TimingSetup(repeats=7)
    table = Table(title="one conv layer, batch 1, 1 thread: microseconds by width (in = out)")
    table.add_column("kernel")
    widths = list(range(56, 73, 2))
    for w in widths:
        table.add_column(str(w), justify="right")
    for k, hw in ((3, 16), (1, 32)):
        cells = []
        for w in widths:
            conv, x = nn.Conv2d(w, w, k, padding=k // 2, bias=False).eval(), torch.randn(1, w, hw, hw)
            cells.append(f"{1000 * time_call(lambda conv=conv, x=x: conv(x), setup):.0f}")
        table.add_row(f"{k}x{k} at {hw}x{hw}", *cells)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,mobilenetv2,vit")
    parser.add_argument("--threads", default="1,2", help="CPU thread counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=10, help="passes per model per round")
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--image-size", type=int, default=64, help="input size of resnet50")
    parser.add_argument("--sweep", action="store_true", help="first time one conv over widths 56..72")
    parser.add_argument("--width-multiple", type=int, default=1, help="kept widths a multiple of this (default 1)")
    parser.add_argument("--macs-only", action="store_true", help="only the MACs target (width-multiple comparisons)")
    args = parser.parse_args()
    console = Console(width=150)
    if args.sweep:
        sweep(console)
    threads = [int(t) for t in args.threads.split(",")]
    catalog = models(args.image_size)
    table = Table(
        title=f"pruned to {args.target:.0%} by DepGraph, compacted, width_multiple {args.width_multiple}; CPU, batch 1 "
        f"(torch {torch.__version__})"
    )
    for col in (
        "model",
        "target",
        "threads",
        "MACs ratio",
        "latency speed-up [IQR]",
        "speed-up / MACs ratio",
        "latency fraction",
        "predicted",
        "check (fastest)",
        "prune s",
    ):
        table.add_column(col, justify="right" if col not in ("model", "target") else "left")
    wall = time.perf_counter()
    for name in args.models.split(","):
        build, shape = catalog[name]
        x = torch.zeros(*shape)
        torch.manual_seed(0)
        base = build().eval()
        base_macs = count_cost(base, x).macs
        wm = args.width_multiple
        by_macs = prune(build, x, {"target_macs_fraction": args.target}, threads[0], wm)
        for t in threads:
            runs = [("MACs", by_macs)]
            if not args.macs_only:
                runs.append(("latency", prune(build, x, {"target_latency_fraction": args.target}, t, wm)))
            for label, (pruned, predicted, checked, seconds) in runs:
                macs_ratio = base_macs / count_cost(pruned, x).macs
                s = compare_latency(base, pruned, x, rounds=args.rounds, repeats=args.repeats, threads=t)
                table.add_row(
                    name,
                    f"{label} {args.target:.0%}",
                    str(t),
                    f"{macs_ratio:.2f}x",
                    f"{s.median:.2f}x [{s.q1:.2f}-{s.q3:.2f}]",
                    f"{s.median / macs_ratio:.2f}",
                    f"{1 / s.median:.3f}",
                    "-" if predicted is None else f"{predicted:.3f}",
                    "-" if checked is None else f"{checked:.3f}",
                    f"{seconds:.0f}",
                )
                console.print(
                    f"{name} {label} {t} threads: base {statistics.median(s.base_ms):.2f} ms, pruned "
                    f"{statistics.median(s.pruned_ms):.2f} ms"
                )
    console.print(table)
    console.print(f"wall {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
