"""Per-layer latency tables: time each layer alone over candidate widths on the target device.

A :class:`LatencyTable` holds, for every distinct layer shape of a model (convolution, linear,
norm; identical layers share one entry), its measured time at a grid of kept input and output
widths, plus the whole model's measured time. Latency at any widths is read by bilinear
interpolation between grid points, with each row made non-decreasing in the width (more
channels never cost less; this also damps timing noise). On the CPU the threads are pinned
and ``time.perf_counter`` times a calibrated loop; on CUDA the table is timed with CUDA events
after a ``synchronize``, in the requested dtype and (for 4-d activations) ``channels_last``.
Tables are cached as JSON (written atomically) and reused while their key matches.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..files import write_json_atomic

__all__ = ["TABLE_SCHEMA", "LatencyTable", "TimingSetup", "probe_widths", "replica", "time_call"]

TABLE_SCHEMA = 1
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BN = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


@dataclass(frozen=True)
class TimingSetup:
    """How the target device runs the model.

    Example:
        >>> TimingSetup("cpu", threads=2).key()["threads"]
        2
    """

    device: str = "cpu"
    threads: int = 1
    batch_size: int = 1
    dtype: str = "float32"
    channels_last: bool = False
    repeats: int = 5
    target_ms: float = 2.0  # each repetition times a loop at least this long (CPU)

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def key(self) -> dict[str, Any]:
        """What a cached table must agree on to be reused (with the layer signatures)."""
        return {
            "device": self.device,
            "device_name": _device_name(self.device),
            "threads": self.threads if self.device == "cpu" else None,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "channels_last": self.channels_last,
            "torch": torch.__version__,
        }


def time_call(fn: Callable[[], Any], setup: TimingSetup, repeats: int | None = None) -> float:
    """Milliseconds of one ``fn()`` call: the fastest of ``setup.repeats`` timed loops (mean per call).

    The fastest loop, not the median: on a shared machine other processes only ever add time, so
    the least-disturbed loop is the best estimate of the call's own cost, and a table built from
    such figures keeps its ratios when the load changes while it is measured.

    Example:
        >>> x = torch.randn(64, 64)
        >>> time_call(lambda: x @ x, TimingSetup(repeats=3, target_ms=0.1)) > 0
        True
    """
    device = torch.device(setup.device)
    old_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(setup.threads)
    try:
        with torch.inference_mode():
            for _ in range(2):
                fn()
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            once = max(time.perf_counter() - start, 1e-7)
            loops = max(1, min(200, math.ceil(setup.target_ms / 1000.0 / once)))
            times = [_timed_loop(fn, loops, device) / loops for _ in range(repeats or setup.repeats)]
    finally:
        torch.set_num_threads(old_threads)
    return min(times)


def _timed_loop(fn: Callable[[], Any], loops: int, device: torch.device) -> float:
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        begin.record()
        for _ in range(loops):
            fn()
        end.record()
        torch.cuda.synchronize(device)
        return float(begin.elapsed_time(end))
    start = time.perf_counter()
    for _ in range(loops):
        fn()
    _sync(device)
    return (time.perf_counter() - start) * 1000.0


def replica(module: nn.Module, input_shape: Sequence[int], out_w: int, in_w: int) -> tuple[nn.Module, list[int]]:
    """A fresh layer like ``module`` with ``out_w`` output and ``in_w`` input channels, and its input shape.

    Covers convolutions (plain, grouped, depthwise, transposed), ``nn.Linear`` and transformers'
    ``Conv1D`` (timed as a Linear), BatchNorm, LayerNorm (last dim) and GroupNorm.

    Example:
        >>> layer, shape = replica(nn.Conv2d(16, 32, 3, stride=2), [1, 16, 8, 8], out_w=8, in_w=4)
        >>> layer.in_channels, layer.out_channels, layer.stride, shape
        (4, 8, (2, 2), [1, 4, 8, 8])
    """
    shape = list(input_shape)
    if isinstance(module, nn.modules.conv._ConvNd):
        dims = len(module.kernel_size)
        depthwise = module.groups == module.out_channels and module.groups == module.in_channels
        groups = in_w if depthwise else module.groups
        if depthwise:
            out_w = in_w
        common: dict[str, Any] = dict(
            stride=module.stride, padding=module.padding, dilation=module.dilation, groups=groups
        )
        bias = module.bias is not None
        kernel: Any = module.kernel_size
        if module.transposed:
            extra: dict[str, Any] = {"output_padding": module.output_padding}
            layer: nn.Module = _CONV_T[dims](in_w, out_w, kernel, bias=bias, **extra, **common)
        else:
            layer = _CONV[dims](in_w, out_w, kernel, bias=bias, padding_mode=module.padding_mode, **common)
        shape[1] = in_w
        return layer, shape
    if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
        shape[-1] = in_w
        return nn.Linear(in_w, out_w, bias=getattr(module, "bias", None) is not None), shape
    if isinstance(module, nn.LayerNorm):
        shape[-1] = out_w
        return nn.LayerNorm(out_w, elementwise_affine=module.elementwise_affine), shape
    if isinstance(module, nn.GroupNorm):
        per_group = max(module.num_channels // module.num_groups, 1)
        shape[1] = out_w
        return nn.GroupNorm(max(out_w // per_group, 1), out_w, affine=module.affine), shape
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        shape[1] = out_w
        return _BN[len(shape)](out_w, affine=module.affine), shape
    raise TypeError(f"no latency replica for {type(module).__name__}")


def probe_widths(full: int, smallest: int, step: int, grid: int) -> list[int]:
    """About ``grid`` widths from ``smallest`` to ``full``, each a multiple of ``step`` (or ``full``).

    Spaced geometrically (denser at small widths, where fixed per-call costs bend the curve), each
    snapped to the nearest allowed width.

    Example:
        >>> probe_widths(64, 8, 8, 4), probe_widths(3, 3, 1, 6), probe_widths(100, 5, 1, 5)
        ([8, 16, 32, 64], [3], [5, 11, 22, 47, 100])
    """
    allowed = sorted({w for w in range(max(step, 1), full + 1, max(step, 1)) if w >= smallest} | {full})
    if len(allowed) <= grid:
        return allowed
    low = allowed[0]
    wanted = [low * (full / low) ** (i / (grid - 1)) for i in range(grid)]
    return sorted({_nearest(allowed, v) for v in wanted})


def _nearest(allowed: list[int], value: float) -> int:
    return min(allowed, key=lambda w: abs(w - value))


@dataclass
class _Entry:
    out_grid: list[int]
    in_grid: list[int]
    ms: list[list[float]]  # [out][in], made non-decreasing along both axes

    def at(self, out_w: float, in_w: float) -> float:
        (o0, o1, fo), (i0, i1, fi) = _bracket(self.out_grid, out_w), _bracket(self.in_grid, in_w)
        row0 = self.ms[o0][i0] * (1 - fi) + self.ms[o0][i1] * fi
        row1 = self.ms[o1][i0] * (1 - fi) + self.ms[o1][i1] * fi
        return row0 * (1 - fo) + row1 * fo


@dataclass
class LatencyTable:
    """Measured per-layer latency over candidate widths, and the whole model's latency, on one device.

    Attributes:
        setup: The timing setup (device, threads, batch, dtype, memory format).
        entries: Per layer signature, the grid and its times in ms.
        full_ms: Latency of the whole model at full width.
        layers_ms: Sum of the table's layer times at full width.
        rest_fixed_ms: Of the rest (``full_ms`` minus the layers), what does not shrink with the
            widths (framework overhead per op).
        rest_volume_ms: Of the rest, what shrinks with the activations left (elementwise work).
    """

    setup: TimingSetup
    entries: dict[str, _Entry] = field(default_factory=dict)
    full_ms: float = 0.0
    layers_ms: float = 0.0
    rest_fixed_ms: float = 0.0
    rest_volume_ms: float = 0.0

    def lookup(self, signature: str, out_w: float, in_w: float) -> float:
        """Interpolated ms of the layer ``signature`` at ``out_w`` output and ``in_w`` input channels."""
        return self.entries[signature].at(out_w, in_w)

    def add(self, signature: str, out_grid: list[int], in_grid: list[int], ms: list[list[float]]) -> None:
        """Record a measured grid (``ms[i][j]`` at ``out_grid[i]``, ``in_grid[j]``), made monotone."""
        mono = [list(row) for row in ms]
        for i in range(len(mono)):
            for j in range(len(mono[i])):
                below = max(mono[i - 1][j] if i else 0.0, mono[i][j - 1] if j else 0.0)
                mono[i][j] = max(mono[i][j], below)
        self.entries[signature] = _Entry(list(out_grid), list(in_grid), mono)

    # ------------------------------------------------------------------ files
    def to_json(self, signatures: list[str]) -> dict[str, Any]:
        return {
            "schema": TABLE_SCHEMA,
            "key": {**self.setup.key(), "layers": signatures},
            "setup": {k: getattr(self.setup, k) for k in TimingSetup.__dataclass_fields__},
            "full_ms": self.full_ms,
            "layers_ms": self.layers_ms,
            "rest_fixed_ms": self.rest_fixed_ms,
            "rest_volume_ms": self.rest_volume_ms,
            "entries": {k: {"out": e.out_grid, "in": e.in_grid, "ms": e.ms} for k, e in self.entries.items()},
        }

    def save(self, path: str | Path, signatures: list[str]) -> None:
        """Write the table as JSON, atomically."""
        write_json_atomic(path, self.to_json(signatures))

    @classmethod
    def load(cls, path: str | Path, setup: TimingSetup, signatures: list[str]) -> LatencyTable | None:
        """The table cached at ``path`` if it was measured for ``setup`` and these layers, else None."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return None
        if data.get("schema") != TABLE_SCHEMA or data.get("key") != {**setup.key(), "layers": signatures}:
            return None
        if not {"full_ms", "layers_ms", "rest_fixed_ms", "rest_volume_ms", "entries"} <= set(data):
            return None
        table = cls(
            setup,
            full_ms=float(data["full_ms"]),
            layers_ms=float(data["layers_ms"]),
            rest_fixed_ms=float(data["rest_fixed_ms"]),
            rest_volume_ms=float(data["rest_volume_ms"]),
        )
        for name, e in data["entries"].items():
            table.entries[name] = _Entry(list(e["out"]), list(e["in"]), [list(map(float, r)) for r in e["ms"]])
        return table


def _bracket(grid: list[int], value: float) -> tuple[int, int, float]:
    """Indices around ``value`` in ``grid`` and the interpolation weight (clamped at the ends)."""
    if value <= grid[0] or len(grid) == 1:
        return 0, 0, 0.0
    if value >= grid[-1]:
        return len(grid) - 1, len(grid) - 1, 0.0
    hi = next(i for i, g in enumerate(grid) if g >= value)
    lo = hi - 1
    return lo, hi, (value - grid[lo]) / (grid[hi] - grid[lo])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"
