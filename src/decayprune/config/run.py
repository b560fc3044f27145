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

import importlib.util
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..registry import DATASETS, METHODS, MODELS
from .prune import PruneSettings
from .train import TrainSettings

__all__ = ["DataConfig", "LossConfig", "ModelConfig", "RunConfig"]

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
#: ``model.name`` prefixes served by another library, and the package each needs.
_LIBRARY_PREFIXES = {"transformers": "transformers", "timm": "timm", "torchvision": "torchvision"}
#: Datasets whose samples are token sequences (the others are images with one class label each).
TOKEN_DATASETS = ("text-bytes",)


def _model_spec_error(value: str) -> str | None:
    """Why ``value`` cannot name a model (None when it can); imports nothing but checks installs."""
    prefix, sep, target = value.partition(":")
    if not sep:
        return (
            None
            if value in MODELS
            else MODELS.allowed_message(value)
            + (
                "; or package.module:factory, transformers:<Config, model class or local folder>, "
                "timm:<name>, torchvision:<name>"
            )
        )
    if not target:
        return f"got {value!r}; give a name after '{prefix}:'"
    if prefix in _LIBRARY_PREFIXES:
        package = _LIBRARY_PREFIXES[prefix]
        if importlib.util.find_spec(package) is None:
            return f"got {value!r}; it needs the {package} package, which is not installed (pip install {package})"
        return None
    if not all(part.isidentifier() for part in prefix.split(".")) or not target.isidentifier():
        return f"got {value!r}; expected package.module:factory (dotted module path, a colon, a function name)"
    return None


def expand_user(path: Path) -> Path:
    """``path`` with a leading ``~`` / ``~user`` expanded; ValueError (a config error) if it cannot be.

    Example:
        >>> expand_user(Path("runs")).as_posix()
        'runs'
    """
    try:
        return path.expanduser()
    except RuntimeError as exc:  # "~name" for a user this machine does not know, or no home directory
        raise ValueError(f"cannot expand '~' in '{path}' ({exc}); give an absolute or relative path") from None


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
    image_size: tuple[int, int] | None = Field(
        None,
        description="imagefolder only: resize (antialiased) and centre-crop every image to [H, W], e.g. the "
        "model's input size; unset: images are used as they are and must share one size.",
    )

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError(f"got {list(value)}; give [height, width] in pixels, both at least 1")
        return value

    @model_validator(mode="after")
    def _size_only_for_folders(self) -> "DataConfig":
        if self.image_size is not None and self.name != "imagefolder":
            raise ValueError(
                f"image_size resizes imagefolder images only; dataset {self.name!r} has a fixed size (remove it)"
            )
        return self

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
        value = expand_user(value)
        if not value.exists():
            raise ValueError(f"folder '{value}' does not exist; give an existing folder or leave it unset")
        if not value.is_dir():
            raise ValueError(f"'{value}' is a file, not a folder")
        return value


class ModelConfig(BaseModel):
    """Which network to build."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    name: str = Field(
        "small_cnn",
        description="A registered model (see `decayprune.list_models()`), package.module:factory, "
        "transformers:<Config class, model class or local model folder>, timm:<name> or torchvision:<name>.",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of a factory or library model (e.g. a transformers config's "
        "hidden_size); registered models take their sizes from the data and `width` instead.",
    )
    width: float = Field(
        1.0, gt=0, le=64, description="Multiplier on every hidden channel count of a registered model (at most 64)."
    )
    weights: Path | None = Field(None, description="A .safetensors file of weights to start from; unset: random init.")
    scratch_from: Path | None = Field(
        None,
        description="A pruned model file (e.g. runs/NAME/pruned.safetensors, its .json next to it): train its "
        "architecture from fresh random weights (the scratch baseline of Liu et al., ICLR 2019).",
    )

    @field_validator("name")
    @classmethod
    def _known_model(cls, value: str) -> str:
        error = _model_spec_error(value)
        if error is not None:
            raise ValueError(error)
        return value

    @property
    def registered(self) -> bool:
        """True when ``name`` is a model of decayprune's registry (sized from the data and ``width``)."""
        return ":" not in self.name

    @field_validator("weights")
    @classmethod
    def _existing_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = expand_user(value)
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
        value = expand_user(value)
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
        if self.registered and self.kwargs:
            raise ValueError(
                f"kwargs apply to factory and library models, not to the registered model {self.name!r} "
                "(its sizes come from the data and width); remove model.kwargs"
            )
        if not self.registered and self.width != 1.0:
            raise ValueError(f"width applies to registered models only; set the sizes of {self.name!r} in model.kwargs")
        return self


class LossConfig(BaseModel):
    """The training loss, which also decides how accuracy is counted."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["cross_entropy", "causal_lm", "token_classification", "mse"] = Field(
        "cross_entropy",
        description="cross_entropy: one class per sample; causal_lm: next-token prediction on token sequences "
        "(logits shifted by one against the inputs); token_classification: one class per token; "
        "mse: mean squared error against float targets of the output's shape.",
    )
    ignore_index: int = Field(
        -100, description="Label value that causal_lm and token_classification skip (padding, sub-words)."
    )


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
    loss: LossConfig = Field(default_factory=LossConfig, description="The training loss (and accuracy count).")
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
        return expand_user(value)

    @model_validator(mode="after")
    def _sections_fit_the_job(self) -> "RunConfig":
        if self.prune is not None and "train" in self.model_fields_set:
            raise ValueError(
                "a config with a 'prune' section trains with 'finetune' (the run during and after pruning) "
                "and 'pretrain' (the base model); rename 'train' to 'finetune'"
            )
        self._loss_fits()
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

    def _loss_fits(self) -> None:
        loss, tokens = self.loss.name, self.data.name in TOKEN_DATASETS
        if loss == "causal_lm" and not tokens:
            raise ValueError(
                f"loss.name: got 'causal_lm' with the image dataset {self.data.name!r}; causal_lm needs token "
                f"sequences (data.name: {', '.join(TOKEN_DATASETS)})"
            )
        if loss in ("cross_entropy", "mse") and tokens:
            raise ValueError(
                f"loss.name: got {loss!r} with the token dataset {self.data.name!r}; use causal_lm "
                "(or token_classification)"
            )
        if loss in ("causal_lm", "token_classification") and self.model.registered:
            raise ValueError(
                f"loss.name: got {loss!r} for the registered image classifier {self.model.name!r}, which has one "
                "output per image; use a token model (e.g. model.name: transformers:GPT2LMHeadModel)"
            )
        if loss == "mse":
            raise ValueError(
                "loss.name: got 'mse'; the train and prune jobs rank runs by test accuracy, which mse has no "
                "counterpart for. Use MSE from Python: Trainer(..., loss=make_loss('mse'))"
            )

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
