"""decayprune: structured pruning for PyTorch built around the Decay Pruning Method (DPM).

The one-object API for your own training loop::

    from decayprune import Pruner, PruneSettings, DecaySettings
    pruner = Pruner(model, example_inputs,
                    PruneSettings(method="depgraph", target_macs_fraction=0.5,
                                  decay=DecaySettings(policy="sp+sr", steps=100)),
                    optimizer=optimizer, total_steps=total_steps)
    # after loss.backward(): pruner.after_backward(); after optimizer.step(): pruner.after_step()
    pruner.compact()   # physical removal, optimizer state remapped
"""

from __future__ import annotations

from .config import ConfigError, DecaySettings, LatencySettings, PruneSettings, RunConfig, TrainSettings, load_config
from .criteria import (
    Criterion,
    caps_from_gradient_rank,
    create_criterion,
    criteria_table,
    list_criteria,
    register_criterion,
)
from .data import DatasetSplits, TensorLoader, TokenSplits, list_datasets, load_dataset
from .decay import DecayEngine, decay_norm, load_sr_stats, plot_sr_stats
from .errors import (
    DataError,
    ExportError,
    RunFolderError,
    ScheduleError,
    TrainingDivergedError,
    UserError,
    WeightsError,
)
from .lowrank import LowRankProjector, factorize
from .measure import LatencyResult, ModelCost, SpeedUp, compare_latency, count_cost, format_count, measure_latency
from .measure.latency_table import LatencyTable
from .methods import (
    DHSPG,
    GateDecorator,
    OTOv2,
    PruneContext,
    PruningMethod,
    SelectionSchedule,
    create_method,
    depgraph_regularize,
    list_methods,
    register_method,
)
from .models import create as create_model
from .models import list_models, register_model, resolve_model
from .pruner import Pruner
from .report import build_report
from .scratch import reinitialize, scratch_epochs, scratch_model
from .sensitivity import caps_from_sensitivity, sensitivity_curves, write_sensitivity
from .sparse import ElementMasks, MagnitudePruning, RigL, load_masked, save_masked
from .structure import (
    ChannelGroup,
    FrozenGroup,
    HeadGroup,
    PrunableUnits,
    SpecError,
    StructureSet,
    UnsupportedModelError,
    compact,
    find_attention,
    load_pruned,
    pruned_hf_config,
    save_hf_pretrained,
    save_pruned,
)
from .structure.cost import BudgetCost, MacsCost
from .structure.latency_cost import LatencyCost
from .train import Loss, Trainer, TrainHook, evaluate, make_loss

__version__ = "0.1.0"

_APPLICATION = {"CheckReport", "check_model", "format_report"}
"""Names served from ``decayprune.jobs.model_check`` on first use (the library does not import jobs/)."""


def __getattr__(name: str) -> object:
    if name in _APPLICATION:
        from .jobs import model_check

        return getattr(model_check, name)
    raise AttributeError(f"module 'decayprune' has no attribute {name!r}")


__all__ = [
    "BudgetCost",
    "ChannelGroup",
    "depgraph_regularize",
    "CheckReport",
    "ConfigError",
    "Criterion",
    "DHSPG",
    "DataError",
    "DatasetSplits",
    "DecayEngine",
    "DecaySettings",
    "ElementMasks",
    "ExportError",
    "FrozenGroup",
    "GateDecorator",
    "LatencyCost",
    "LatencyResult",
    "LatencySettings",
    "LatencyTable",
    "MacsCost",
    "LowRankProjector",
    "MagnitudePruning",
    "Loss",
    "ModelCost",
    "OTOv2",
    "PrunableUnits",
    "PruneContext",
    "PruneSettings",
    "Pruner",
    "PruningMethod",
    "RigL",
    "RunConfig",
    "RunFolderError",
    "ScheduleError",
    "SelectionSchedule",
    "SpecError",
    "SpeedUp",
    "StructureSet",
    "HeadGroup",
    "TensorLoader",
    "TokenSplits",
    "TrainHook",
    "TrainSettings",
    "Trainer",
    "TrainingDivergedError",
    "UnsupportedModelError",
    "UserError",
    "WeightsError",
    "build_report",
    "caps_from_gradient_rank",
    "caps_from_sensitivity",
    "check_model",
    "compact",
    "compare_latency",
    "count_cost",
    "create_criterion",
    "create_method",
    "create_model",
    "criteria_table",
    "decay_norm",
    "load_sr_stats",
    "make_loss",
    "plot_sr_stats",
    "evaluate",
    "factorize",
    "format_count",
    "format_report",
    "find_attention",
    "list_criteria",
    "list_datasets",
    "list_methods",
    "list_models",
    "load_config",
    "load_dataset",
    "load_masked",
    "load_pruned",
    "measure_latency",
    "register_criterion",
    "register_method",
    "register_model",
    "reinitialize",
    "save_masked",
    "resolve_model",
    "save_pruned",
    "save_hf_pretrained",
    "pruned_hf_config",
    "scratch_epochs",
    "scratch_model",
    "sensitivity_curves",
    "write_sensitivity",
    "__version__",
]
