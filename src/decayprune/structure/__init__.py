"""What can be pruned: channel groups, keep-at-zero masks, compaction and pruned-model files."""

from .check import CheckReport, check_model, format_report, resolve_model
from .compaction import CompactionReport, compact
from .cost import CostModel
from .serialization import SpecError, apply_spec, load_pruned, model_spec, read_spec, save_pruned
from .slices import CONSUMER, PRODUCER, ParamSlice, UnsupportedModelError
from .structure_set import FrozenGroup, LayerGroup, StructureSet, find_classifier

__all__ = [
    "StructureSet",
    "LayerGroup",
    "ParamSlice",
    "PRODUCER",
    "CONSUMER",
    "UnsupportedModelError",
    "find_classifier",
    "CostModel",
    "compact",
    "CompactionReport",
    "save_pruned",
    "load_pruned",
    "model_spec",
    "read_spec",
    "apply_spec",
    "SpecError",
    "FrozenGroup",
    "CheckReport",
    "check_model",
    "format_report",
    "resolve_model",
]
