"""Training engine: settings, loop with hooks, schedules, evaluation and pickle-free checkpoints.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from decayprune.train import Trainer, TrainSettings
    >>> data = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))] * 2
    >>> result = Trainer(nn.Linear(4, 3), data, data, TrainSettings(epochs=1, device="cpu"), progress=False).fit()
    >>> sorted(result.final)
    ['loss', 'samples', 'top1', 'top5']
"""

from __future__ import annotations

from decayprune.config.train import TrainSettings, resolve_device
from decayprune.files import save_safetensors_atomic, write_json_atomic, write_text_atomic
from decayprune.train.amp import autocast, make_scaler, scale_of, step_skipped
from decayprune.train.checkpoint import (
    flatten_state,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    unflatten_state,
)
from decayprune.train.distributed import get_rank, get_world_size, is_distributed, is_main_process, unwrap_model
from decayprune.train.evaluate import evaluate, topk_correct
from decayprune.train.hooks import TrainHook
from decayprune.train.losses import Loss, make_loss
from decayprune.train.metrics_log import read_jsonl
from decayprune.train.optim import build_optimizer
from decayprune.train.schedule import build_scheduler, lr_at, lr_factor
from decayprune.train.seed import get_rng_state, set_rng_state, set_seed
from decayprune.train.trainer import Trainer, TrainResult

__all__ = [
    "TrainHook",
    "TrainResult",
    "TrainSettings",
    "Trainer",
    "autocast",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "Loss",
    "make_loss",
    "flatten_state",
    "get_rank",
    "get_rng_state",
    "get_world_size",
    "is_distributed",
    "is_main_process",
    "load_checkpoint",
    "lr_at",
    "lr_factor",
    "make_scaler",
    "read_checkpoint_meta",
    "read_jsonl",
    "resolve_device",
    "save_checkpoint",
    "save_safetensors_atomic",
    "scale_of",
    "set_rng_state",
    "set_seed",
    "step_skipped",
    "topk_correct",
    "unflatten_state",
    "unwrap_model",
    "write_json_atomic",
    "write_text_atomic",
]
