"""Cost of DPM in a training step: plain vs keep-at-zero (oneshot) vs sp vs sp+sr.

Usage:
    python benchmarks/dpm_overhead.py [--models resnet56,resnet50] [--devices cpu,cuda] [--steps 10]
        [--batch-size N] [--image-size N] [--sync-every K]

Per model, four copies of the same network (same weights, batch and optimizer: SGD, momentum
0.9) run one training step each in turn (interleaved, so machine noise hits all alike):

* ``plain``: no pruner;
* ``oneshot``: DepGraph selected half the MACs at step 1 and zeroed them (keep-at-zero only);
* ``sp`` / ``sp+sr``: the same selection decays (N longer than the run, so every measured step
  pays for norms, rescale, keep-at-zero and, for sp+sr, the self-rectifying statistics).

The table gives per-variant medians (ms) and their ratio to ``plain``, and, from torch.profiler
over ``--profile-steps`` consecutive steps, the host syncs (``aten::item``,
``aten::_local_scalar_dense``, ``aten::nonzero``, ``aten::is_nonzero``; on CUDA also
``cudaStreamSynchronize`` and device-to-host ``cudaMemcpy*``) and the top-level operator calls
made inside ``after_backward`` + ``after_step`` per step (kernel launches too on CUDA).

``resnet56`` is the CIFAR model of the registry (batch 128, 32x32); ``resnet50`` is torchvision's
when importable, else a compact ResNet-50-like bottleneck network defined here (batch 64, 224x224).
On a small CPU use ``--batch-size``/``--image-size`` to keep it short.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from decayprune import DecaySettings, Pruner, PruneSettings, create_model

SYNC_OPS = ("aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero")
CUDA_SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpy")
VARIANTS = ("plain", "oneshot", "sp", "sp+sr")
DEFAULTS = {"resnet56": (128, 32, 10), "resnet50": (64, 224, 1000)}


# ---------------------------------------------------------------------------- models


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = 4 * width
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


class ResNet50Like(nn.Module):
    """ResNet-50's layout (3-4-6-3 bottlenecks, widths 64..512, 1000 classes), ~25.6M parameters."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        blocks, cin = [], 64
        for width, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for i in range(count):
                blocks.append(_Bottleneck(cin, width, stride if i == 0 else 1))
                cin = 4 * width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


def build_model(name: str) -> nn.Module:
    if name == "resnet50":
        try:
            import torchvision

            return torchvision.models.resnet50()
        except ImportError:
            return ResNet50Like()
    return create_model(name)


# ---------------------------------------------------------------------------- runs


class Variant:
    """One model copy, its optimizer and (except ``plain``) its pruner."""

    def __init__(
        self,
        name: str,
        template: nn.Module,
        example: torch.Tensor,
        device: torch.device,
        sync_every: int | None,
        steps: int,
    ) -> None:
        self.name = name
        self.model = template
        self.pruner: Pruner | None = None
        if name != "plain":
            decay = {"policy": name, "steps": 100 * steps}
            if sync_every is not None and "sync_every" in DecaySettings.model_fields:
                decay["sync_every"] = sync_every
            settings = PruneSettings(
                method="depgraph",
                target_macs_fraction=0.5,
                iterative_steps=1,
                start_epoch=0,
                decay=DecaySettings(**decay),
            )
            self.pruner = Pruner(self.model, example, settings, total_steps=10**7)
        self.model.to(device).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        if self.pruner is not None:
            self.pruner.bind(self.opt)

    def step(self, x: torch.Tensor, y: torch.Tensor, sync: Callable[[], None], prof: bool = False) -> float:
        sync()
        t0 = time.perf_counter()
        loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.pruner is not None:
            with torch.profiler.record_function("dpm") if prof else _null():
                self.pruner.after_backward()
        self.opt.step()
        if self.pruner is not None:
            with torch.profiler.record_function("dpm") if prof else _null():
                self.pruner.after_step()
        sync()
        return time.perf_counter() - t0

    def decaying(self) -> int:
        engine = self.pruner.engine
        return int(getattr(engine, "decaying", getattr(engine, "active", None)).sum())


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _inside_dpm(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == "dpm":
            return True
        parent = parent.cpu_parent
    return False


def profile_counts(variant: Variant, x: torch.Tensor, y: torch.Tensor, steps: int, device: torch.device) -> dict:
    """Host syncs, top-level operator calls (and CUDA kernels) inside DPM's calls, per step."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            variant.step(x, y, lambda: None, prof=True)
    counts: Counter = Counter()
    for ev in prof.events():
        if ev.name == "dpm":
            continue
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            continue
        if not _inside_dpm(ev):
            continue
        if ev.name in SYNC_OPS or any(ev.name.startswith(c) for c in CUDA_SYNC_CALLS):
            counts["syncs"] += 1
        parent = ev.cpu_parent
        if ev.name.startswith("aten::") and parent is not None and parent.name == "dpm":
            counts["ops"] += 1
        if ev.name.startswith("cudaLaunchKernel") or ev.name.startswith("cuLaunchKernel"):
            counts["launches"] += 1
    return {k: counts[k] / steps for k in ("syncs", "ops", "launches")}


def run(model_name: str, device: torch.device, args: argparse.Namespace, console: Console) -> None:
    batch, size, classes = DEFAULTS.get(model_name, (128, 32, 10))
    batch = args.batch_size or batch
    size = args.image_size or size
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    template = build_model(model_name)
    state = template.state_dict()
    example = torch.randn(1, 3, size, size)
    variants = []
    for name in VARIANTS:
        model = build_model(model_name)
        model.load_state_dict(state)
        variants.append(Variant(name, model, example, device, args.sync_every, args.warmup + args.steps))
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    for i in range(args.warmup + args.steps):
        for v in variants:
            t = v.step(x, y, sync)
            if i >= args.warmup:
                times[v.name].append(t)
    first = variants[-1].pruner.step + 1
    profiled = {v.name: profile_counts(v, x, y, args.profile_steps, device) for v in variants if v.pruner is not None}
    base = statistics.median(times["plain"])
    table = Table(
        title=f"one training step: {model_name}, batch {batch}, {size}x{size}, {device.type}, "
        f"{args.steps} timed steps (median)"
    )
    for col in ("variant", "median ms", "min ms", "ratio", "host syncs/step", "DPM ops/step", "kernel launches/step"):
        table.add_column(col, justify="right" if col != "variant" else "left")
    for v in variants:
        med = statistics.median(times[v.name])
        p = profiled.get(v.name)
        extra = (
            ["-", "-", "-"]
            if p is None
            else [f"{p['syncs']:.1f}", f"{p['ops']:.0f}", f"{p['launches']:.0f}" if device.type == "cuda" else "-"]
        )
        table.add_row(v.name, f"{1000 * med:.1f}", f"{1000 * min(times[v.name]):.1f}", f"{med / base:.3f}x", *extra)
    console.print(table)
    pr = variants[-1].pruner
    engine = pr.engine
    console.print(
        f"structures {pr.structures.num_structures}: pruned {int(pr.structures.pruned.sum())} (oneshot: "
        f"{int(variants[1].pruner.structures.pruned.sum())}), decaying {variants[-1].decaying()}; "
        f"read-back every {getattr(engine, 'sync_every', 1)} steps; profiled steps {first}-"
        f"{first + args.profile_steps - 1}; threads {torch.get_num_threads()}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet56,resnet50")
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 128 (resnet56), 64 (resnet50)")
    parser.add_argument("--image-size", type=int, default=None, help="default: 32 (resnet56), 224 (resnet50)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (selection happens at step 1)")
    parser.add_argument("--profile-steps", type=int, default=8, help="consecutive steps profiled per variant")
    parser.add_argument(
        "--sync-every",
        type=int,
        default=32,
        help="DPM's read-back period K (DecaySettings.sync_every); as on an accelerator",
    )
    args = parser.parse_args(argv)
    console = Console()
    for dev in args.devices.split(","):
        for model_name in args.models.split(","):
            run(model_name, torch.device(dev), args, console)


if __name__ == "__main__":
    main()
