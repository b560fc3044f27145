"""Validated settings of one training run (:class:`TrainSettings`)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .amp import amp_problem

__all__ = ["TrainSettings", "resolve_device"]


class TrainSettings(BaseModel):
    """Everything that decides how a model is trained.

    Unknown keys are refused, so a misspelt option in a YAML file is an error rather
    than a silently ignored value.

    Example:
        >>> s = TrainSettings(epochs=2, lr=0.05, schedule="step", milestones=[1])
        >>> s.optimizer, s.batch_size
        ('sgd', 128)
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, ge=0, description="Number of passes over the training set.")
    batch_size: int = Field(128, ge=1, description="Samples per optimizer step (per process under DDP).")
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="Optimizer family: 'sgd' or 'adamw'.")
    lr: float = Field(0.1, gt=0, description="Peak learning rate, reached after warm-up.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (ignored by AdamW).")
    nesterov: bool = Field(False, description="Use Nesterov momentum with SGD (needs momentum > 0).")
    weight_decay: float = Field(5e-4, ge=0, description="Weight decay, applied to every parameter.")
    schedule: Literal["step", "cosine", "constant"] = Field(
        "cosine", description="Learning-rate schedule after warm-up: 'step', 'cosine' or 'constant'."
    )
    milestones: list[int] = Field(
        default_factory=list, description="Epochs at which the 'step' schedule multiplies the lr by gamma."
    )
    gamma: float = Field(0.1, gt=0, le=1, description="Factor applied at each milestone of the 'step' schedule.")
    warmup_epochs: int = Field(0, ge=0, description="Epochs of linear lr warm-up from lr/steps to lr.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the training cross-entropy.")
    amp: Literal["off", "bf16", "fp16"] = Field(
        "off",
        description="Mixed precision: 'off', 'bf16' (bfloat16 autocast) or 'fp16' (float16 autocast + GradScaler); "
        "CPU and CUDA (true means 'fp16', false 'off').",
    )
    channels_last: bool = Field(False, description="Use channels-last memory format for 4-D data; CUDA only.")
    seed: int = Field(0, ge=0, lt=2**32, description="Seed of python, numpy and torch RNGs and of the data order.")
    device: str = Field("auto", description="'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'.")
    eval_every: int = Field(1, ge=1, description="Evaluate on the test set every this many epochs (and at the end).")
    checkpoint_every: int = Field(
        1, ge=0, description="Write a checkpoint every this many epochs (0: only at the end)."
    )
    log_every: int = Field(20, ge=1, description="Refresh the progress bar every this many steps.")

    @field_validator("milestones")
    @classmethod
    def _milestones_increasing(cls, value: list[int]) -> list[int]:
        if any(m <= 0 for m in value):
            raise ValueError(f"milestones must be positive epoch numbers, got {value}")
        if any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {value}")
        return value

    @field_validator("amp", mode="before")
    @classmethod
    def _amp_bool(cls, value: object) -> object:
        if isinstance(value, bool):  # the older form: amp: true / false
            return "fp16" if value else "off"
        return value

    @field_validator("device")
    @classmethod
    def _device_known(cls, value: str) -> str:
        if value == "auto":
            return value
        try:
            torch.device(value)
        except (RuntimeError, ValueError) as err:
            raise ValueError(f"device {value!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from err
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainSettings:
        if self.milestones and self.milestones[-1] >= self.epochs:
            raise ValueError(f"milestones must all be < epochs ({self.epochs}), got {self.milestones}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be <= epochs ({self.epochs})")
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0 (got momentum=0)")
        if self.amp != "off" and self.device != "auto":
            device = torch.device(self.device)
            problem = amp_problem(self.amp, device) if device.type != "cuda" or torch.cuda.is_available() else None
            if problem:
                raise ValueError(problem)
        return self


def resolve_device(name: str) -> torch.device:
    """Turn a settings device name into a :class:`torch.device`.

    Args:
        name: ``"auto"`` (CUDA when available, else CPU) or any torch device string.

    Returns:
        The device.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device: got {name!r}; expected cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
    return device
