"""The train job: config -> data + model -> training (resumable) -> weights and ``result.json``.

Used by ``decayprune train``; with ``model.scratch_from`` it trains a pruned run's architecture
from fresh random weights (the scratch baseline). The run folder receives ``config.yaml``, ``metrics.jsonl``,
``checkpoint/``, ``model.safetensors`` + ``model.json`` (weights and their shape spec, loadable
on their own) and ``result.json`` (see :mod:`decayprune.jobs.results`).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape

from ..config import RunConfig
from ..errors import RunFolderError, TrainingDivergedError
from ..measure import count_cost
from ..scratch import scratch_model
from ..structure import save_pruned
from ..train import Trainer, read_checkpoint_meta
from .build import arch_spec, example_input, input_shape, load_data, make_loaders, model_for_data, run_loss
from .hooks import DivergenceGuard, ElapsedTime
from .results import RESULT_FILE, common_fields, write_result
from .rundir import prepare_run_dir

__all__ = ["run_train_job"]


def run_train_job(
    cfg: RunConfig,
    *,
    resume: bool | Literal["auto"] = False,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> dict[str, Any]:
    """Train the model a config names and return the ``result.json`` record.

    Args:
        cfg: The run config (its ``train`` section).
        resume: Continue the run in ``cfg.run_dir`` (``"auto"``: when there is one).
        overwrite: Clear a non-empty run folder for a fresh run.
        progress: Draw a progress bar.
        console: Where to print.

    Raises:
        RunFolderError: See :func:`~decayprune.jobs.rundir.prepare_run_dir`.
        TrainingDivergedError: The loss became NaN/inf (``result.json`` is written with status ``failed``).

    Example:
        >>> import tempfile
        >>> from decayprune.config import load_config
        >>> cfg = load_config(None, values={"output_dir": tempfile.mkdtemp(), "train.epochs": 1,
        ...                                 "data.train_subset": 64, "data.test_subset": 32})
        >>> run_train_job(cfg, progress=False, console=Console(quiet=True))["epochs"]
        1
    """
    console = console or Console()
    splits = load_data(cfg)
    model = model_for_data(cfg.model, splits, seed=cfg.train.seed)
    if cfg.model.scratch_from is not None:  # the pruned architecture, re-initialised (scratch baseline)
        model = scratch_model(cfg.model.scratch_from, seed=cfg.train.seed, model=model)
    run_dir = prepare_run_dir(cfg, resume=resume, overwrite=overwrite)
    resuming = _has_checkpoint(run_dir)
    if resume is True and not resuming:
        raise RunFolderError(f"nothing to resume in '{run_dir}': it has no checkpoint/ yet; run without --resume")
    train_loader, test_loader = make_loaders(splits, cfg)
    console.print(
        f"[bold]train[/] {escape(cfg.model.name)} (width {cfg.model.width:g}) on {escape(cfg.data.name)}: "
        f"{splits.num_train} train / {splits.num_test} test samples -> {escape(str(run_dir))}",
        soft_wrap=True,
    )
    clock = ElapsedTime()
    trainer = Trainer(
        model,
        train_loader,
        test_loader,
        cfg.train,
        run_dir=run_dir,
        hooks=[DivergenceGuard(), clock],
        loss=run_loss(cfg),
        progress=progress,
        console=console,
    )
    record = common_fields(cfg, "train", input_shape(splits))
    try:
        result = trainer.fit(resume=resuming)
    except TrainingDivergedError as exc:
        write_result(
            run_dir / RESULT_FILE,
            {**record, "status": "failed", "error": str(exc), "epochs": exc.epoch, "wall_time_s": clock.total_s},
        )
        raise
    tail = time.perf_counter()
    model.eval()
    save_pruned(model.to("cpu"), run_dir / "model", arch=arch_spec(cfg.model, splits))
    cost = count_cost(model.to("cpu"), example_input(splits))
    record.update(
        epochs=int(trainer.epoch),
        top1=float(result.final["top1"]),
        top5=float(result.final["top5"]),
        test_loss=float(result.final["loss"]),
        test_samples=int(result.final["samples"]),
        macs=int(cost.macs),
        macs_counter=cost.counter,
        params=int(cost.params),
        wall_time_s=clock.total_s + time.perf_counter() - tail,
    )
    return write_result(run_dir / RESULT_FILE, record)


def _has_checkpoint(run_dir: Any) -> bool:
    try:
        read_checkpoint_meta(run_dir / "checkpoint")
        return True
    except FileNotFoundError:
        return False
