"""Latency as a budget cost: a measured per-layer table read at the widths a mask leaves.

:func:`latency_cost` times every distinct conv / linear / norm layer of a
:class:`~decayprune.structure.StructureSet` over candidate kept widths on the target device (or
reads the table cached next to the run), and returns a :class:`LatencyCost`: for a mask, the sum
of each layer's interpolated time at its alive widths, plus the rest of the measured model time:
a fixed part (framework overhead per op) and a part that shrinks with the activations left
(elementwise work). The two are told apart by timing the model twice, at full width and
compacted to about half of every layer's width (a two-point calibration).

Example (a given table, no timing):
    >>> import torch, torch.nn as nn
    >>> from decayprune.measure.latency_table import LatencyTable, TimingSetup
    >>> from decayprune.structure import StructureSet
    >>> s = StructureSet(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), torch.zeros(1, 4))
    >>> table = LatencyTable(TimingSetup(), full_ms=3.0, layers_ms=3.0)   # no time outside the layers
    >>> sig = layer_signatures(s)
    >>> table.add(sig[0], [1, 8], [4], [[0.5], [2.0]]); table.add(sig[1], [2], [1, 8], [[0.2, 1.0]])
    >>> cost = LatencyCost(s, table)
    >>> none = torch.zeros(8, dtype=torch.bool); half = torch.arange(8) < 4
    >>> round(cost(none), 3), round(cost(half), 3)   # 2.0 + 1.0; at 4 of 8 hidden units, 3/7 of the way up
    (3.0, 1.686)
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from ..measure.inputs import call_model, input_values, map_inputs
from ..measure.latency_table import LatencyTable, TimingSetup, probe_widths, replica, time_call
from .compaction import compact
from .cost import _LayerCost, allowed_kept

if TYPE_CHECKING:
    from .units import StructureSet

__all__ = ["LATENCY_TABLE_FILE", "LatencyCost", "latency_cost", "layer_signatures", "measure_table"]

#: File name of the cached table in a run's pruning folder.
LATENCY_TABLE_FILE = "latency_table.json"
#: Bytes of distinct inputs a layer's timing loop cycles through (beyond a CPU's last-level cache share).
_SPILL_BYTES = 32 * 2**20
_POOL_MAX = 64
#: Alternating rounds of timing the full and the half-width model when a table is measured.
_MODEL_ROUNDS = 3
#: Layers keep at least this fraction of their width in the table's grid (no method prunes more).
_SMALLEST_FRACTION = 0.05


def _one_dim(lc: _LayerCost) -> bool:
    return lc.kind in ("depthwise", "norm")


def _signature(lc: _LayerCost) -> str:
    m = lc.module
    spec: dict = {"type": type(m).__name__, "kind": lc.kind, "out": lc.out_channels, "in": lc.in_channels}
    for name in ("kernel_size", "stride", "padding", "dilation", "groups", "output_padding", "num_groups"):
        if hasattr(m, name):
            spec[name] = getattr(m, name)
    spec.update(bias=lc.has_bias, affine=lc.affine, input=list(lc.input_shape[1:]))
    return json.dumps(spec, sort_keys=True, default=str)


def layer_signatures(structures: "StructureSet") -> list[str]:
    """One signature per layer the cost model records (identical layers share one)."""
    return [_signature(lc) for lc in structures.cost.layers]


class LatencyCost:
    """Predicted latency (ms) of a :class:`StructureSet`'s model under a mask, from a :class:`LatencyTable`."""

    kind = "latency"
    unit = "ms"

    def __init__(self, structures: "StructureSet", table: LatencyTable) -> None:
        self.structures = structures
        self.table = table
        self.signatures = layer_signatures(structures)
        layers = structures.cost.layers
        self._volume_full = float(sum(lc.out_channels * lc.positions for lc in layers)) or 1.0
        self._scale = _layer_scale(table)

    def layer_ms(self, pruned: torch.Tensor) -> list[float]:
        """Predicted ms of every recorded layer under ``pruned`` (order of ``structures.cost.layers``)."""
        widths = self.structures.cost.widths(pruned)
        return [self.table.lookup(sig, out, inp) for sig, (out, inp) in zip(self.signatures, widths, strict=True)]

    def __call__(self, pruned: torch.Tensor) -> float:
        widths = self.structures.cost.widths(pruned)
        layers = self.structures.cost.layers
        total = sum(self.table.lookup(sig, out, inp) for sig, (out, inp) in zip(self.signatures, widths, strict=True))
        volume = sum(lc.positions * out for lc, (out, _inp) in zip(layers, widths, strict=True))
        return total * self._scale + self.table.rest_fixed_ms + self.table.rest_volume_ms * volume / self._volume_full


def _layer_scale(table: LatencyTable) -> float:
    """1, or less when the layers timed alone add up to more than the whole model (warmer caches)."""
    return min(1.0, table.full_ms / table.layers_ms) if table.layers_ms > 0 else 1.0


def measure_table(
    structures: "StructureSet", setup: TimingSetup, width_multiple: int = 1, grid: int = 6
) -> LatencyTable:
    """Time each distinct layer over about ``grid`` kept widths per prunable dimension, and the whole model.

    Widths are multiples of ``width_multiple`` (the widths pruning can leave) from about 5% of the
    layer up to its full width; a dimension pruning cannot change is timed at its full width only.
    """
    cost_model = structures.cost
    table = LatencyTable(setup)
    device, dtype = torch.device(setup.device), setup.torch_dtype
    for lc, sig in zip(cost_model.layers, layer_signatures(structures), strict=True):
        if sig in table.entries:
            continue
        out_prunable, in_prunable = cost_model.prunable_dims(lc)
        out_grid = _grid(lc.out_channels, out_prunable, width_multiple, grid)
        in_grid = [lc.in_channels] if _one_dim(lc) else _grid(lc.in_channels, in_prunable, width_multiple, grid)
        ms = [[_time_layer(lc, o, o if _one_dim(lc) else i, setup, device, dtype) for i in in_grid] for o in out_grid]
        table.add(sig, out_grid, in_grid, ms)
    full = [lc.in_channels for lc in cost_model.layers]
    table.layers_ms = sum(
        table.lookup(sig, lc.out_channels, inp)
        for lc, sig, inp in zip(cost_model.layers, layer_signatures(structures), full, strict=True)
    )
    half = _half_mask(structures, width_multiple)
    twin = _twin(structures)
    if twin is not None:
        twin.set_pruned(half.nonzero().flatten())
        twin.zero_pruned_()
        compact(twin)
    # The full and the half model alternate over rounds (the fastest pass of each counts), so a
    # burst of load on a shared machine does not fall on one of them only.
    full_ms = half_ms = math.inf
    for _ in range(_MODEL_ROUNDS):
        full_ms = min(full_ms, time_model(structures.model, structures.example_inputs, setup))
        if twin is not None:
            half_ms = min(half_ms, time_model(twin.model, twin.example_inputs, setup))
    table.full_ms = full_ms
    _calibrate_rest(structures, table, half, half_ms if twin is not None else None)
    return table


def _calibrate_rest(structures: "StructureSet", table: LatencyTable, half: torch.Tensor, half_ms: float | None) -> None:
    """Split the time outside the layers into a fixed and an activation-proportional part.

    ``half_ms`` is the time of a compacted copy at about half of every layer's width (the mask
    ``half``): with ``L`` the layer sum and ``v`` the share of activations left,
    ``T = L + fixed + volume * v`` at both points. Without it, all of the rest shrinks with ``v``.
    """
    rest_full = max(table.full_ms - _layer_scale(table) * table.layers_ms, 0.0)
    table.rest_volume_ms, table.rest_fixed_ms = rest_full, 0.0
    if half_ms is None:
        return
    table.rest_volume_ms = 0.0
    probe = LatencyCost(structures, table)  # layers only, with the scale in force
    layers = structures.cost.layers
    rest_half = half_ms - probe(half)
    widths = structures.cost.widths(half)
    share = sum(lc.positions * out for lc, (out, _i) in zip(layers, widths, strict=True)) / probe._volume_full
    volume = (rest_full - rest_half) / (1 - share) if share < 1 else 0.0
    table.rest_volume_ms = min(max(volume, 0.0), rest_full)
    table.rest_fixed_ms = rest_full - table.rest_volume_ms


def _twin(structures: "StructureSet") -> "StructureSet | None":
    """The same structures on a copy of the model (None when the copy traces differently)."""
    from .units import StructureSet

    model = copy.deepcopy(structures.model)
    modules = dict(model.named_modules())
    names = {m: n for n, m in structures.model.named_modules()}
    ignored = [modules[names[m]] for m in structures.ignored_layers if m in names]
    twin = StructureSet(
        model,
        structures.example_inputs,
        ignored_layers=ignored,
        ignore_classifier=structures.protect_outputs,
        verify=structures.verify,
        tolerance=structures.tolerance,
        head_units=structures.head_units,
    )
    same = [(g.name, g.size) for g in twin.layers] == [(g.name, g.size) for g in structures.layers]
    return twin if same else None


def _half_mask(structures: "StructureSet", width_multiple: int) -> torch.Tensor:
    """Every layer pruned to about half its width (a kept width the multiple allows)."""
    mask = torch.zeros(structures.num_structures, dtype=torch.bool)
    for layer in structures.layers:
        step = allowed_kept(layer, width_multiple)
        if step == 0:
            continue
        kept = max(step, round(layer.size / 2 / step) * step)
        mask[layer.first + kept : layer.first + layer.size] = True
    return mask


def time_model(model: nn.Module, example_inputs: tuple | dict, setup: TimingSetup) -> float:
    """Ms of a forward pass of a copy of ``model`` on the setup's device, dtype, format and batch
    (:func:`~decayprune.measure.latency_table.time_call` with twice the table's repeats)."""
    device, dtype = torch.device(setup.device), setup.torch_dtype
    runner = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    inputs = map_inputs(example_inputs, lambda x: _prepare(x, setup, device, dtype))
    if setup.channels_last and any(isinstance(x, torch.Tensor) and x.dim() == 4 for x in input_values(inputs)):
        runner = runner.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return time_call(lambda: call_model(runner, inputs), setup, repeats=2 * setup.repeats)


def latency_cost(
    structures: "StructureSet", setup: TimingSetup, *, width_multiple: int = 1, grid: int = 6, cache: Path | None = None
) -> LatencyCost:
    """A :class:`LatencyCost` from the table cached at ``cache`` when it matches, else measured (and cached)."""
    signatures = layer_signatures(structures)
    table = LatencyTable.load(cache, setup, signatures) if cache is not None else None
    if table is None:
        table = measure_table(structures, setup, width_multiple, grid)
        if cache is not None:
            table.save(cache, signatures)
    return LatencyCost(structures, table)


def _grid(full: int, prunable: bool, width_multiple: int, grid: int) -> list[int]:
    if not prunable:
        return [full]
    step = max(width_multiple, 1) if full >= width_multiple else full
    return probe_widths(full, max(1, math.ceil(_SMALLEST_FRACTION * full)), step, grid)


def _prepare(x: torch.Tensor, setup: TimingSetup, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    x = x.to(device)
    x = x.expand(setup.batch_size, *x.shape[1:]).contiguous() if x.dim() > 0 else x
    if x.is_floating_point():
        x = x.to(dtype)
    if setup.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _time_layer(
    lc: _LayerCost, out_w: int, in_w: int, setup: TimingSetup, device: torch.device, dtype: torch.dtype
) -> float:
    layer, shape = replica(lc.module, lc.input_shape, out_w, in_w)
    layer = layer.to(device=device, dtype=dtype).eval()
    x = _prepare(torch.randn(shape), setup, device, dtype)
    if setup.channels_last and x.dim() == 4:
        layer = layer.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    # Inside the model a layer reads activations another layer just wrote, not an input that stays
    # in cache over a timing loop: cycle through enough distinct inputs to spill the caches.
    pool = [x] + [x.clone() for _ in range(min(_POOL_MAX, math.ceil(_SPILL_BYTES / max(_nbytes(x), 1))) - 1)]
    turn = iter(range(1 << 62))
    return time_call(lambda: layer(pool[next(turn) % len(pool)]), setup)


def _nbytes(x: torch.Tensor) -> int:
    return x.numel() * x.element_size()
