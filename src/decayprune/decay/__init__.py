"""DPM: smooth pruning and self-rectifying, for any base method."""

from .engine import DecayEngine, DecayEvent
from .schedule import decay_norm
from ..config.prune import DecaySettings, Policy

__all__ = ["DecayEngine", "DecayEvent", "DecaySettings", "Policy", "decay_norm"]
