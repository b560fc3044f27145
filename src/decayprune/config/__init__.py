"""Run configuration: the settings schema, YAML I/O with dotted overrides, and error text.

This package imports nothing from the engine (structures, decay, methods): names and options
of models, datasets, methods and criteria are checked against :mod:`decayprune.registry`.
Every problem in a config is reported at once, each as ``<dotted.key>: got <value>; <allowed>``.

Example:
    >>> cfg = load_config(None, ["prune.target_macs_fraction=0.5", "finetune.epochs=2"])
    >>> cfg.prune.method, cfg.finetune.epochs
    ('depgraph', 2)
"""

from ..errors import ConfigError
from .latency import LatencySettings
from .loading import config_to_dict, dump_config, load_config
from .prune import DecaySettings, Policy, PruneSettings, validate_options
from .run import DataConfig, LossConfig, ModelConfig, RunConfig
from .train import TrainSettings, resolve_device

__all__ = [
    "ConfigError",
    "DataConfig",
    "DecaySettings",
    "LatencySettings",
    "LossConfig",
    "ModelConfig",
    "Policy",
    "PruneSettings",
    "RunConfig",
    "TrainSettings",
    "config_to_dict",
    "dump_config",
    "load_config",
    "resolve_device",
    "validate_options",
]
