"""Unstructured sparsity: element masks as prunable units, and the methods that choose them.

:class:`ElementMasks` (:mod:`.masks`) makes every Linear / Conv weight element a unit of the decay
engine, so ``oneshot``, ``sp`` and ``sp+sr`` apply to single weights as they do to channels.
Methods: :class:`MagnitudePruning` (Han et al. with one-shot / linear / cubic schedules,
:mod:`.magnitude`), SNIP (:mod:`.snip`), RigL (:mod:`.rigl`), SCL's trainable
mask scores (:mod:`.scl`), iterative importance deactivation (:mod:`.deactivation`). Files: :mod:`.files` (safetensors,
dense weights + masks).
"""

from .deactivation import IterativeDeactivation
from .files import load_masked, save_masked
from .magnitude import MagnitudePruning
from .masks import MASKABLE_TYPES, ElementMasks
from .rigl import RigL, erk_densities
from .schedules import SCHEDULES, sparsity_at
from .scl import SCL, binary_step
from .snip import snip_scores, snip_select
from .targets import layer_targets, select_n_of_m, select_smallest

__all__ = [
    "ElementMasks",
    "MASKABLE_TYPES",
    "MagnitudePruning",
    "RigL",
    "IterativeDeactivation",
    "SCL",
    "binary_step",
    "erk_densities",
    "SCHEDULES",
    "sparsity_at",
    "snip_scores",
    "snip_select",
    "layer_targets",
    "select_smallest",
    "select_n_of_m",
    "save_masked",
    "load_masked",
]
