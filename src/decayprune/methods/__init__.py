"""Base pruning methods: who is selected, when, and with which regulariser, optimizer or gates.

A method sees a :class:`PruneContext` and answers through the hooks of :class:`PruningMethod`.
Ranking methods combine a criterion (:mod:`decayprune.criteria`) with the selection schedule.
"""

from .base import PruningMethod, create_method, list_methods, method_class, register_method
from .budget import allowed_kept, check_layer_caps, fill_to_budget, layer_cap_ratios, snap_to_widths
from .context import PruneContext
from .depgraph import DepGraph
from .depgraph_reg import depgraph_gammas, depgraph_regularize, group_lasso_regularize
from .dhspg import DHSPG
from .elements import ElementMagnitude, ElementRigL, ElementSNIP
from .gate_decorator import GateDecorator, GateDecoratorOptions
from .gated_norms import add_norm_gates, gate_taylor_scores
from .global_threshold import layer_floor, tick_selection
from .iterative import IterativeMethod, RankingOptions
from .magnitude import L1Pruning, RandomPruning
from .max_redundancy import MaxRedundancy
from .otov2 import OTOv2
from .schedule import SelectionSchedule
from .slimming import NetworkSlimming
from .spectral import SpectralRadius
from .thinet import ThiNetMethod
from .tick_tock import TickTockSchedule, triangular_lr

__all__ = [
    "DHSPG",
    "DepGraph",
    "ElementMagnitude",
    "ElementRigL",
    "ElementSNIP",
    "GateDecorator",
    "GateDecoratorOptions",
    "IterativeMethod",
    "L1Pruning",
    "MaxRedundancy",
    "NetworkSlimming",
    "OTOv2",
    "PruneContext",
    "PruningMethod",
    "RandomPruning",
    "RankingOptions",
    "SelectionSchedule",
    "SpectralRadius",
    "ThiNetMethod",
    "TickTockSchedule",
    "add_norm_gates",
    "allowed_kept",
    "check_layer_caps",
    "create_method",
    "depgraph_gammas",
    "depgraph_regularize",
    "fill_to_budget",
    "gate_taylor_scores",
    "group_lasso_regularize",
    "layer_cap_ratios",
    "layer_floor",
    "list_methods",
    "method_class",
    "register_method",
    "snap_to_widths",
    "tick_selection",
    "triangular_lr",
]
