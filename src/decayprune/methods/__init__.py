"""Base pruning methods: who is selected, when, and with which regulariser, optimizer or gates.

A method sees a :class:`PruneContext` and answers through the hooks of :class:`PruningMethod`.
Ranking methods combine a criterion (:mod:`decayprune.criteria`) with the selection schedule.
"""

from .base import PruningMethod, create_method, list_methods, method_class, register_method
from .budget import check_layer_caps, fill_to_budget, layer_cap_ratios
from .context import PruneContext
from .depgraph import DepGraph
from .iterative import IterativeMethod, RankingOptions
from .magnitude import L1Pruning, RandomPruning
from .schedule import SelectionSchedule
from .slimming import NetworkSlimming

__all__ = [
    "DepGraph",
    "IterativeMethod",
    "L1Pruning",
    "NetworkSlimming",
    "PruneContext",
    "PruningMethod",
    "RandomPruning",
    "RankingOptions",
    "SelectionSchedule",
    "check_layer_caps",
    "create_method",
    "fill_to_budget",
    "layer_cap_ratios",
    "list_methods",
    "method_class",
    "register_method",
]
