"""Jobs: what a command does, without the command line (train, prune, export) and their files.

``build`` (data, model, loaders, weights from a config), ``rundir`` (safe run folders),
``checks`` (refuse a schedule that cannot prune), ``hooks`` (divergence guard, elapsed time across
resumes), ``snapshot`` (accuracy, cost, latency), ``results`` (the one ``result.json`` schema),
``train`` / ``prune`` (the jobs), ``export`` (load a model from its files, export it), ``model_check``
(can this model be pruned exactly: build, prune, compact, compare).

Example:
    >>> from decayprune.jobs import RESULT_SCHEMA, run_prune_job, run_train_job
    >>> RESULT_SCHEMA
    2
"""

from .build import (
    arch_spec,
    build_model,
    example_input,
    load_data,
    load_splits,
    load_weights,
    make_loaders,
    model_for_data,
    model_kwargs,
    package_version,
    run_loss,
    save_weights,
)
from .checks import check_schedule
from .export import EXPORT_FORMATS, LoadedModel, export_model, find_model_files, load_model_files
from .hooks import DivergenceGuard, ElapsedTime
from .prune import run_prune_job
from .results import RESULT_SCHEMA, write_result
from .rundir import changed_keys, config_hash, prepare_run_dir
from .snapshot import snapshot
from .train import run_train_job

__all__ = [
    "EXPORT_FORMATS",
    "RESULT_SCHEMA",
    "DivergenceGuard",
    "ElapsedTime",
    "LoadedModel",
    "arch_spec",
    "build_model",
    "changed_keys",
    "check_schedule",
    "config_hash",
    "example_input",
    "export_model",
    "find_model_files",
    "load_data",
    "load_model_files",
    "load_splits",
    "load_weights",
    "make_loaders",
    "model_for_data",
    "model_kwargs",
    "package_version",
    "prepare_run_dir",
    "run_loss",
    "run_prune_job",
    "run_train_job",
    "save_weights",
    "snapshot",
    "write_result",
]
