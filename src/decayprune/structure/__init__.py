"""What can be pruned: channel groups, keep-at-zero masks, compaction and pruned-model files.

Layout: :mod:`.graph` (the one door to torch-pruning), :mod:`.discovery` (tracing into channel
groups), :mod:`.groups` (the :class:`ChannelGroup` type), :mod:`.units` (the
:class:`PrunableUnits` protocol and :class:`StructureSet`, its channel-group implementation),
:mod:`.kernels` (element-level :class:`FlatPlan` s and the keep-at-zero dispatch), :mod:`.heads`
(attention heads as units), :mod:`.hf_pretrained` (a pruned Hugging Face model as a
``save_pretrained`` folder).
"""

from .compaction import CompactionReport, compact
from .cost import CostModel
from .discovery import Discovery, discover, find_classifier
from .groups import ChannelGroup, FrozenGroup, LayerGroup
from .heads import HeadGroup, HeadLayout, find_attention
from .hf_pretrained import pruned_hf_config, save_hf_pretrained
from .kernels import FlatPlan, SliceEntry
from .serialization import SpecError, apply_spec, load_pruned, model_spec, read_spec, save_pruned
from .slices import CONSUMER, PRODUCER, ParamSlice, UnsupportedModelError
from .units import PrunableUnits, StructureSet

__all__ = [
    "StructureSet",
    "PrunableUnits",
    "ChannelGroup",
    "LayerGroup",
    "ParamSlice",
    "PRODUCER",
    "CONSUMER",
    "UnsupportedModelError",
    "find_classifier",
    "discover",
    "Discovery",
    "FlatPlan",
    "SliceEntry",
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
    "HeadGroup",
    "HeadLayout",
    "find_attention",
    "pruned_hf_config",
    "save_hf_pretrained",
]
