"""The sparse-learning phase of a prune job: train with the method's regulariser before pruning.

DepGraph's protocol has three phases with their own lr schedules: sparse learning (training with
its regulariser), pruning, fine-tuning. A config expresses the first with a ``sparse_learning``
section (a :class:`~decayprune.config.TrainSettings`) and ``prune.method_options.sparse_phase:
own``; the pruning run then does not regularise. The phase writes ``sparse.safetensors`` +
``sparse.json`` (reused on resume when data, model, pretrain, sparse_learning and prune settings
match) and ``sparse_learning/`` (metrics, checkpoints).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.nn as nn
from rich.console import Console

from ..config import RunConfig
from ..files import write_json_atomic
from ..methods import create_method
from ..pruner import build_structures
from ..structure import StructureSet
from ..train import Trainer, read_checkpoint_meta
from ..train.distributed import barrier, broadcast_buffers, is_main_process, process_device, wrap_ddp
from ..train.hooks import TrainHook
from .build import RunData, example_input, make_loaders, reuse_phase_weights, run_loss, save_weights
from .hooks import DivergenceGuard, ElapsedTime
from .rundir import config_hash

__all__ = ["SPARSE_SECTIONS", "SparseLearningHook", "run_sparse_learning"]

#: The config sections the sparse-learned model depends on (its ``sparse.json`` records their hash).
SPARSE_SECTIONS = ("data", "model", "pretrain", "sparse_learning", "prune")


class SparseLearningHook(TrainHook):
    """Call ``regularize()`` after every backward (the method adds its regulariser's gradient).

    Example:
        >>> calls = []
        >>> SparseLearningHook(lambda: calls.append(1)).after_backward(None)
        >>> calls
        [1]
    """

    def __init__(self, regularize: Callable[[], None]) -> None:
        self._regularize = regularize

    def after_backward(self, trainer: Any) -> None:
        self._regularize()


def _structures(cfg: RunConfig, model: nn.Module, splits: RunData) -> StructureSet:
    assert cfg.prune is not None
    return build_structures(model, example_input(splits), cfg.prune)


def run_sparse_learning(
    cfg: RunConfig, model: nn.Module, splits: RunData, run_dir: Path, *, progress: bool, console: Console
) -> dict[str, Any]:
    """Train ``model`` in place with the method's regulariser as ``cfg.sparse_learning`` says.

    Returns ``{epochs, time_s}`` (zeros when the config has no ``sparse_learning`` section).

    Raises:
        RunFolderError: ``sparse.safetensors`` exists but was made for other settings.
    """
    if cfg.sparse_learning is None or cfg.prune is None:
        return {"epochs": 0, "time_s": 0.0}
    weights, meta_file = run_dir / "sparse.safetensors", run_dir / "sparse.json"
    wanted = config_hash(cfg, SPARSE_SECTIONS)
    reused = reuse_phase_weights(model, weights, meta_file, wanted, "sparse-learned for other settings")
    if reused is not None:
        return reused
    method = create_method(cfg.prune.method, **cfg.prune.method_options)
    regularize = method.sparse_learning_step(_structures(cfg, model.to("cpu"), splits))  # type: ignore[attr-defined]
    phase_cfg = cfg.model_copy(update={"finetune": cfg.sparse_learning})
    train_loader, test_loader = make_loaders(splits, phase_cfg)
    folder = run_dir / "sparse_learning"
    console.print(
        f"[bold]sparse learning[/]: {cfg.sparse_learning.epochs} epochs with the {cfg.prune.method} regulariser "
        f"(sparse_lambda {cfg.prune.method_options['sparse_lambda']:g})"
    )
    clock = ElapsedTime()
    trainer = Trainer(
        wrap_ddp(model, process_device(cfg.sparse_learning.device)),
        train_loader,
        test_loader,
        cfg.sparse_learning,
        run_dir=folder,
        hooks=[SparseLearningHook(regularize), DivergenceGuard(), clock],
        loss=run_loss(cfg),
        progress=progress,
        console=console,
    )
    try:
        read_checkpoint_meta(folder / "checkpoint")
        resume = True
    except FileNotFoundError:
        resume = False
    trainer.fit(resume=resume)
    info = {"epochs": int(trainer.epoch), "time_s": clock.total_s}
    broadcast_buffers(model)
    if is_main_process():  # under torchrun only rank 0 writes
        save_weights(model, weights)
        write_json_atomic(meta_file, {"config_hash": wanted, **info})
    barrier()
    return info
