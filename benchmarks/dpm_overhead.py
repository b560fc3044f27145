"""Cost of DPM in a training step: plain vs keep-at-zero (oneshot) vs sp vs sp+sr.

Usage:
    python benchmarks/dpm_overhead.py [--models resnet56,resnet50] [--devices cpu,cuda] [--steps 10]
        [--batch-size N] [--image-size N] [--sync-every K] [--depth-models resnet20,resnet56,resnet110]
        [--ops-only]

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

A second table counts the aten operator calls of one sp+sr DPM step (``after_backward`` +
``after_step``, a step between read-backs) for each of ``--depth-models`` (ResNet-20, -56, -110:
the same layer types, 3x / 6x as many parameter tensors): ``dispatched`` counts every call that
reaches the dispatcher from the DPM code (a ``TorchDispatchMode``; one ``_foreach_*`` call counts once,
as it is one or a few kernel launches on CUDA), ``profiled`` every aten call the profiler records
(nested ones too: on the CPU a ``_foreach_*`` call runs one ``mul_`` per tensor), ``top-level`` the
profiler's calls made by the DPM code itself. Both paths are counted: the CPU's (per-row norms and
row fills per parameter, :attr:`FlatPlan.cpu_row_ops`) and the accelerator's fused one, forced on
the CPU. ``--ops-only`` prints only this table.

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
from torch.utils._python_dispatch import TorchDispatchMode

from decayprune import DecaySettings, Pruner, PruneSettings, create_model
from decayprune.structure import PRODUCER
from decayprune.structure.kernels import FlatPlan

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


class _CountCalls(TorchDispatchMode):
    """Counts the aten calls that reach the dispatcher (each ``_foreach_*`` call once)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.views = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        self.views += bool(getattr(func, "is_view", False))  # views (as_strided, ...) launch no kernel
        return func(*args, **(kwargs or {}))


def _dpm_step_ops(variant: Variant, x: torch.Tensor, y: torch.Tensor, steps: int) -> dict[str, float]:
    """Aten calls per DPM step of ``variant``: dispatched, profiled (nested too) and top-level."""
    pruner = variant.pruner
    assert pruner is not None
    dispatched = views = 0
    for _ in range(steps):
        loss = F.cross_entropy(variant.model(x), y)
        variant.opt.zero_grad(set_to_none=True)
        loss.backward()
        with _CountCalls() as counter:
            pruner.after_backward()
        variant.opt.step()
        with counter:
            pruner.after_step()
        dispatched += counter.calls
        views += counter.views
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            variant.step(x, y, lambda: None, prof=True)
    every = top = 0
    for ev in prof.events():
        if ev.name.startswith("aten::") and _inside_dpm(ev):
            every += 1
            top += ev.cpu_parent is not None and ev.cpu_parent.name == "dpm"
    return {
        "dispatched": dispatched / steps,
        "compute": (dispatched - views) / steps,
        "profiled": every / steps,
        "top": top / steps,
    }


def depth_table(args: argparse.Namespace, console: Console) -> None:
    """Aten calls per sp+sr DPM step for models of growing depth, on both FlatPlan paths (CPU)."""
    table = Table(
        title=f"aten calls per sp+sr DPM step (after_backward + after_step), CPU, sync_every {args.sync_every}, "
        "a step between read-backs"
    )
    cols = ("model", "param tensors", "path", "dispatched", "of which not views", "profiled (nested too)", "top-level")
    for col in (*cols, "dispatched / tensor"):
        table.add_column(col, justify="left" if col in ("model", "path") else "right")
    device = torch.device("cpu")
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    for model_name in args.depth_models.split(","):
        for path, row_ops in (("cpu rows", True), ("fused", False)):
            FlatPlan.cpu_row_ops = row_ops
            try:
                torch.manual_seed(0)
                variant = Variant("sp+sr", build_model(model_name), x[:1], device, args.sync_every, 1000)
                assert variant.pruner is not None
                for _ in range(3):  # selection at step 1, then steady decay steps
                    variant.step(x, y, lambda: None)
                tensors = sum(len(p.params) for p in variant.pruner.structures.flat_plans(PRODUCER))
                counts = _dpm_step_ops(variant, x, y, args.profile_steps)
            finally:
                FlatPlan.cpu_row_ops = True
            table.add_row(
                model_name,
                str(tensors),
                path,
                f"{counts['dispatched']:.0f}",
                f"{counts['compute']:.0f}",
                f"{counts['profiled']:.0f}",
                f"{counts['top']:.0f}",
                f"{counts['dispatched'] / tensors:.2f}",
            )
    console.print(table)


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
    parser.add_argument(
        "--depth-models",
        default="resnet20,resnet56,resnet110",
        help="models of growing depth for the operator-count table ('' skips it)",
    )
    parser.add_argument("--ops-only", action="store_true", help="only the operator-count table")
    args = parser.parse_args(argv)
    console = Console(width=150)
    if args.depth_models:
        depth_table(args, console)
    if args.ops_only:
        return
    for dev in args.devices.split(","):
        for model_name in args.models.split(","):
            run(model_name, torch.device(dev), args, console)


if __name__ == "__main__":
    main()
