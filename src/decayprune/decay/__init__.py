"""DPM: smooth pruning and self-rectifying, for any base method."""

from ..config.prune import DecaySettings, Policy
from .engine import DecayEngine
from .events import DecayEvent
from .plot import plot_sr_stats
from .schedule import decay_norm
from .stats import load_sr_stats

__all__ = ["DecayEngine", "DecayEvent", "DecaySettings", "Policy", "decay_norm", "load_sr_stats", "plot_sr_stats"]
