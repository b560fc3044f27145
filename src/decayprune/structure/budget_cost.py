"""From prune settings to the budget's cost (MACs or a measured latency) and the width multiple.

Example:
    >>> import torch, torch.nn as nn
    >>> from decayprune.config import PruneSettings
    >>> from decayprune.structure import StructureSet
    >>> s = StructureSet(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), torch.zeros(1, 4))
    >>> settings = PruneSettings(target_macs_fraction=0.5, latency={"device": "cpu"})
    >>> budget_cost(s, settings, resolve_width_multiple(settings)).kind, resolve_width_multiple(settings)
    ('macs', 1)
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from ..config import PruneSettings
from ..config.latency import default_width_multiple
from ..measure.latency_table import TimingSetup
from .cost import BudgetCost, MacsCost
from .latency_cost import LatencyCost, latency_cost, time_model

if TYPE_CHECKING:
    from .units import StructureSet

__all__ = ["budget_cost", "check_latency_target", "resolve_width_multiple", "timing_setup"]


def timing_setup(settings: PruneSettings) -> TimingSetup:
    """The :class:`TimingSetup` of ``settings.latency`` (``auto`` device resolved on this machine).

    Raises:
        ValueError: A CUDA device is asked for and none is present, or float16 on the CPU.
    """
    lat = settings.latency
    device = lat.resolved_device(torch.cuda.is_available())
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"prune.latency.device is {lat.device!r}, but this machine has no CUDA device")
    if device == "cpu" and lat.dtype == "float16":
        raise ValueError("prune.latency.dtype float16 is CUDA only; this machine times on the CPU")
    return TimingSetup(
        device=device,
        threads=lat.threads or 1,
        batch_size=lat.batch_size,
        dtype=lat.dtype,
        channels_last=lat.channels_last,
        repeats=lat.repeats,
    )


def resolve_width_multiple(settings: PruneSettings) -> int:
    """``settings.width_multiple``, with ``auto`` chosen for the latency device (8 on CUDA, 1 on the CPU)."""
    if settings.width_multiple != "auto":
        return int(settings.width_multiple)
    return default_width_multiple(settings.latency.resolved_device(torch.cuda.is_available()))


def budget_cost(
    structures: "StructureSet", settings: PruneSettings, width_multiple: int, cache: Path | None = None
) -> BudgetCost:
    """MACs, or with ``target_latency_fraction`` a :class:`LatencyCost` (table read from ``cache`` or measured)."""
    if settings.budget_kind == "macs":
        return MacsCost(structures)
    return latency_cost(
        structures, timing_setup(settings), width_multiple=width_multiple, grid=settings.latency.grid, cache=cache
    )


def check_latency_target(
    cost: LatencyCost, model: nn.Module, settings: PruneSettings, predicted_ms: float
) -> dict[str, Any]:
    """Time the compacted ``model`` like the table did; warn when it misses the target by more than the tolerance."""
    table = cost.table
    measured = time_model(model, cost.structures.example_inputs, table.setup)
    target = settings.remaining_fraction()
    tolerance = settings.latency.tolerance
    result = {
        "kind": "latency",
        "device": table.setup.device,
        "target_fraction": target,
        "predicted_fraction": predicted_ms / table.full_ms,
        "measured_fraction": measured / table.full_ms,
        "base_ms": table.full_ms,
        "pruned_ms": measured,
        "tolerance": tolerance,
        "within_tolerance": measured / table.full_ms <= target * (1 + tolerance),
    }
    if not result["within_tolerance"]:
        warnings.warn(
            f"the pruned model takes {measured:.3f} ms on {table.setup.device}, {result['measured_fraction']:.1%} of "
            f"the base {table.full_ms:.3f} ms, above the target {target:.1%} + {tolerance:.0%} tolerance: the "
            "machine may be busy (timings vary), or the table's prediction is off for this model",
            stacklevel=3,
        )
    return result
