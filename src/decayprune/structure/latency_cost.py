"""Latency as a budget cost: a measured per-layer table read at the widths a mask leaves.

:func:`latency_cost` times every distinct conv / linear / norm layer of a
:class:`~decayprune.structure.StructureSet` over candidate kept widths on the target device (or
reads the table cached next to the run), and returns a :class:`LatencyCost`: for a mask, the sum
of each layer's interpolated time at its alive widths, plus the rest of the measured full-model
time (elementwise work, framework overhead) scaled with the share of activations left.

Example (a given table, no timing):
    >>> import torch, torch.nn as nn
    >>> from decayprune.measure.latency_table import LatencyTable, TimingSetup
    >>> from decayprune.structure import StructureSet
    >>> s = StructureSet(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), torch.zeros(1, 4))
    >>> table = LatencyTable(TimingSetup(), full_ms=3.0, layers_ms=3.0)
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

from ..measure.latency_table import LatencyTable, TimingSetup, probe_widths, replica, time_call
from .cost import _LayerCost

if TYPE_CHECKING:
    from .structure_set import StructureSet

__all__ = ["LATENCY_TABLE_FILE", "LatencyCost", "latency_cost", "layer_signatures", "measure_table"]

#: File name of the cached table in a run's pruning folder.
LATENCY_TABLE_FILE = "latency_table.json"
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
        # Rest of the model's time; when the layers alone take longer (caches warm differently in
        # isolation) the layer sum is scaled down to the measured total instead.
        self._rest = max(table.full_ms - table.layers_ms, 0.0)
        self._scale = min(1.0, table.full_ms / table.layers_ms) if table.layers_ms > 0 else 1.0

    def layer_ms(self, pruned: torch.Tensor) -> list[float]:
        """Predicted ms of every recorded layer under ``pruned`` (order of ``structures.cost.layers``)."""
        widths = self.structures.cost.widths(pruned)
        return [self.table.lookup(sig, out, inp) for sig, (out, inp) in zip(self.signatures, widths, strict=True)]

    def __call__(self, pruned: torch.Tensor) -> float:
        widths = self.structures.cost.widths(pruned)
        layers = self.structures.cost.layers
        total = sum(self.table.lookup(sig, out, inp) for sig, (out, inp) in zip(self.signatures, widths, strict=True))
        volume = sum(lc.positions * out for lc, (out, _inp) in zip(layers, widths, strict=True))
        return total * self._scale + self._rest * volume / self._volume_full


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
    table.full_ms = time_model(structures.model, structures.example_inputs, setup)
    return table


def time_model(model: nn.Module, example_inputs: tuple, setup: TimingSetup) -> float:
    """Ms of a forward pass of a copy of ``model`` on the setup's device, dtype, format and batch
    (:func:`~decayprune.measure.latency_table.time_call` with three times the table's repeats)."""
    device, dtype = torch.device(setup.device), setup.torch_dtype
    runner = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    inputs = [_prepare(x, setup, device, dtype) for x in example_inputs]
    if setup.channels_last and any(x.dim() == 4 for x in inputs):
        runner = runner.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return time_call(lambda: runner(*inputs), setup, repeats=3 * setup.repeats)


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
    return time_call(lambda: layer(x), setup)
