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
from .criteria import Criterion, create_criterion, criteria_table, list_criteria, register_criterion
from .data import DatasetSplits, TensorLoader, list_datasets, load_dataset
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
    list_methods,
    register_method,
)
from .models import create as create_model
from .models import list_models, register_model
from .pruner import Pruner
from .report import build_report
from .scratch import reinitialize, scratch_epochs, scratch_model
from .sensitivity import caps_from_sensitivity, sensitivity_curves, write_sensitivity
from .structure import (
    CheckReport,
    FrozenGroup,
    SpecError,
    StructureSet,
    UnsupportedModelError,
    check_model,
    compact,
    format_report,
    load_pruned,
    save_pruned,
)
from .structure.cost import BudgetCost, MacsCost
from .structure.latency_cost import LatencyCost
from .train import Trainer, TrainHook, evaluate

__version__ = "0.1.0"

__all__ = [
    "BudgetCost",
    "CheckReport",
    "ConfigError",
    "Criterion",
    "DHSPG",
    "DataError",
    "DatasetSplits",
    "DecayEngine",
    "DecaySettings",
    "ExportError",
    "FrozenGroup",
    "GateDecorator",
    "LatencyCost",
    "LatencyResult",
    "LatencySettings",
    "LatencyTable",
    "MacsCost",
    "ModelCost",
    "OTOv2",
    "PruneContext",
    "PruneSettings",
    "Pruner",
    "PruningMethod",
    "RunConfig",
    "RunFolderError",
    "ScheduleError",
    "SelectionSchedule",
    "SpecError",
    "SpeedUp",
    "StructureSet",
    "TensorLoader",
    "TrainHook",
    "TrainSettings",
    "Trainer",
    "TrainingDivergedError",
    "UnsupportedModelError",
    "UserError",
    "WeightsError",
    "build_report",
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
    "plot_sr_stats",
    "evaluate",
    "format_count",
    "format_report",
    "list_criteria",
    "list_datasets",
    "list_methods",
    "list_models",
    "load_config",
    "load_dataset",
    "load_pruned",
    "measure_latency",
    "register_criterion",
    "register_method",
    "register_model",
    "reinitialize",
    "save_pruned",
    "scratch_epochs",
    "scratch_model",
    "sensitivity_curves",
    "write_sensitivity",
    "__version__",
]
