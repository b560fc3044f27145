"""Model cost measurement: MACs and parameters (:func:`count_cost`), wall-clock latency
(:func:`measure_latency`), the speed-up of a pruned model over its base (:func:`compare_latency`)
and compact number formatting (:func:`format_count`). Per-layer latency tables for latency
budgets live in :mod:`decayprune.measure.latency_table`.

Example:
    >>> import torch
    >>> from decayprune.models import create
    >>> from decayprune.measure import count_cost, format_count
    >>> cost = count_cost(create("resnet20"), torch.zeros(1, 3, 32, 32))
    >>> format_count(cost.params), format_count(cost.macs)
    ('0.27M', '41.4M')
"""

from __future__ import annotations

from decayprune.measure.compare import SpeedUp, compare_latency
from decayprune.measure.cost import COUNTERS, DEFAULT_COUNTER, ModelCost, count_cost, flop_counter_macs
from decayprune.measure.format import format_count
from decayprune.measure.latency import LatencyResult, measure_latency

__all__ = [
    "COUNTERS",
    "DEFAULT_COUNTER",
    "LatencyResult",
    "ModelCost",
    "SpeedUp",
    "compare_latency",
    "count_cost",
    "flop_counter_macs",
    "format_count",
    "measure_latency",
]
