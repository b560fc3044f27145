"""The run config: one section per concern (``data``, ``model``, training, pruning).

A ``train`` run reads ``train``. A ``prune`` run reads ``pretrain`` (the base model, when no
``model.weights`` is given), ``sparse_learning`` (optional: training with the method's
regulariser before pruning, e.g. DepGraph's protocol), ``prune`` (method, MACs budget, schedule,
zeroing policy) and ``finetune`` (the training run during and after pruning: selections, decay,
recovery).

Example:
    >>> cfg = RunConfig.model_validate({"prune": {"target_macs_fraction": 0.5}, "finetune": {"epochs": 3}})
    >>> cfg.is_prune, cfg.run_settings.epochs, cfg.prune.method
    (True, 3, 'depgraph')
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..registry import DATASETS, METHODS, MODELS
from .prune import PruneSettings
from .train import TrainSettings

__all__ = ["DataConfig", "ModelConfig", "RunConfig"]

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class DataConfig(BaseModel):
    """Which dataset to train and test on."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    name: str = Field("digits", description="Dataset name (see `decayprune.list_datasets()`).")
    data_dir: Path | None = Field(
        None,
        description="Folder holding the dataset files; unset means the dataset's default "
        "location (the embedded data for 'digits').",
    )
    seed: int = Field(0, description="Seed for subset sampling and the train/test split, if any.")
    train_subset: int | None = Field(
        None, ge=1, description="Use only this many training images (random, seeded); unset: all."
    )
    test_subset: int | None = Field(
        None, ge=1, description="Use only this many test images (random, seeded); unset: all."
    )

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if value not in DATASETS:
            raise ValueError(DATASETS.allowed_message(value))
        return DATASETS.key(value)

    @field_validator("data_dir")
    @classmethod
    def _existing_folder(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        if not value.exists():
            raise ValueError(f"folder '{value}' does not exist; give an existing folder or leave it unset")
        if not value.is_dir():
            raise ValueError(f"'{value}' is a file, not a folder")
        return value


class ModelConfig(BaseModel):
    """Which network to build."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    name: str = Field("small_cnn", description="Model name (see `decayprune.list_models()`).")
    width: float = Field(1.0, gt=0, le=64, description="Multiplier on every hidden channel count (at most 64).")
    weights: Path | None = Field(None, description="A .safetensors file of weights to start from; unset: random init.")
    scratch_from: Path | None = Field(
        None,
        description="A pruned model file (e.g. runs/NAME/pruned.safetensors, its .json next to it): train its "
        "architecture from fresh random weights (the scratch baseline of Liu et al., ICLR 2019).",
    )

    @field_validator("name")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in MODELS:
            raise ValueError(MODELS.allowed_message(value))
        return value

    @field_validator("weights")
    @classmethod
    def _existing_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        if not value.exists():
            raise ValueError(f"file '{value}' does not exist; give a .safetensors file or leave it unset")
        if not value.is_file():
            raise ValueError(f"'{value}' is a folder, not a .safetensors file")
        return value

    @field_validator("scratch_from")
    @classmethod
    def _existing_pruned_model(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        spec = (
            value.with_suffix(".json")
            if value.suffix in (".safetensors", ".json")
            else value.with_name(value.name + ".json")
        )
        if not spec.is_file():
            raise ValueError(
                f"no pruned-model spec '{spec}'; give a pruned model file such as runs/NAME/pruned.safetensors"
            )
        return value

    @model_validator(mode="after")
    def _one_start(self) -> "ModelConfig":
        if self.weights is not None and self.scratch_from is not None:
            raise ValueError("weights and scratch_from exclude each other: scratch training starts from random weights")
        return self


class RunConfig(BaseModel):
    """One run: what to train or prune, on what, how, and where to write it."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    name: str = Field(
        "run",
        description="Run name, used as the run folder name: letters, digits, '.', '_' and '-', "
        "starting with a letter or digit, at most 100 characters.",
    )
    output_dir: Path = Field(Path("runs"), description="Folder that holds run folders.")
    data: DataConfig = Field(default_factory=DataConfig, description="Dataset settings.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Model settings.")
    train: TrainSettings = Field(default_factory=TrainSettings, description="`train` runs: how the model is trained.")
    pretrain: TrainSettings | None = Field(
        None,
        description="`prune` runs: train the base model first with these settings (skipped if model.weights is set).",
    )
    prune: PruneSettings | None = Field(
        None, description="`prune` runs: method, MACs budget, schedule and zeroing policy (oneshot, sp, sp+sr)."
    )
    finetune: TrainSettings = Field(
        default_factory=TrainSettings,
        description="`prune` runs: the training run during and after pruning (selections, decay, recovery).",
    )
    sparse_learning: TrainSettings | None = Field(
        None,
        description="`prune` runs: train the base model with the method's regulariser (its own epochs and lr "
        "schedule) before the pruning run; needs a method with sparse learning (depgraph) with sparse_lambda > 0 "
        "and sparse_phase: own (DepGraph's three phases: sparse learning, pruning, fine-tuning).",
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _SAFE_NAME.fullmatch(value):
            raise ValueError(
                f"got {value!r}; use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("output_dir")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _sections_fit_the_job(self) -> "RunConfig":
        if self.prune is not None and "train" in self.model_fields_set:
            raise ValueError(
                "a config with a 'prune' section trains with 'finetune' (the run during and after pruning) "
                "and 'pretrain' (the base model); rename 'train' to 'finetune'"
            )
        if self.prune is None:
            extra = [k for k in ("finetune", "pretrain", "sparse_learning") if k in self.model_fields_set]
            if extra:
                raise ValueError(
                    f"{' and '.join(extra)} only apply to prune runs; add a 'prune' section or remove them"
                )
            return self
        method, options = self.prune.method, self.prune.method_options
        phase = options.get("sparse_phase")
        if self.sparse_learning is not None:
            if not getattr(METHODS.get(method), "supports_sparse_learning", False):
                takers = [n for n in METHODS.names() if getattr(METHODS.get(n), "supports_sparse_learning", False)]
                raise ValueError(
                    f"sparse_learning: method {method!r} has no sparse-learning regulariser; methods with one: "
                    f"{', '.join(takers)}"
                )
            if not options.get("sparse_lambda", 0) > 0:
                raise ValueError(
                    "sparse_learning: prune.method_options.sparse_lambda is 0, so the phase would train without a "
                    "regulariser; set sparse_lambda > 0 (DepGraph's reg, e.g. 5e-4) or remove the section"
                )
            if phase != "own":
                raise ValueError(
                    f"sparse_learning: prune.method_options.sparse_phase is {phase!r}; set it to 'own' (regularise in "
                    "the sparse_learning phase, not during the pruning run) or remove the section"
                )
        elif phase == "own":
            raise ValueError(
                "prune.method_options.sparse_phase 'own' needs a 'sparse_learning' section (its epochs and lr "
                "schedule); add one, or use sparse_phase 'pruning'"
            )
        return self

    @property
    def is_prune(self) -> bool:
        """True when the config describes a prune run (it has a ``prune`` section)."""
        return self.prune is not None

    @property
    def run_settings(self) -> TrainSettings:
        """The training settings of this run: ``finetune`` for a prune run, ``train`` otherwise."""
        return self.finetune if self.is_prune else self.train

    @property
    def run_dir(self) -> Path:
        """The run folder, ``<output_dir>/<name>``."""
        return self.output_dir / self.name
