"""The prune job: base model -> pruning run (selection, DPM decay, fine-tune) -> compaction -> result.

Used by ``decayprune prune``, ``decayprune demo`` and the benchmarks. Every phase writes into the
run folder and resumes: the base model is reused once ``base.safetensors`` exists *and* its
``base.json`` records the same model, data and pretrain settings; the pruning run continues from
its last checkpoint. The run folder receives ``config.yaml``, ``base.safetensors`` + ``base.json``,
``pretrain/`` and ``prune/`` (metrics, checkpoints, ``dpm_events.jsonl``), ``pruned.safetensors`` +
``pruned.json`` (the compacted model, loadable on its own) and ``result.json``
(fields: :mod:`decayprune.jobs.results`).

Under ``torchrun`` (a process group joined by the caller, see
:func:`decayprune.train.distributed.distributed_session`) every rank trains a DDP-wrapped copy on
its shard of the data, takes the same pruning decisions (checked, see
:meth:`decayprune.Pruner.check_ranks_agree`) and compacts its own copy; only rank 0 writes files
and prints.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn
from rich.console import Console
from rich.markup import escape

from ..config import RunConfig
from ..errors import ConfigError, TrainingDivergedError
from ..files import write_json_atomic
from ..pruner import Pruner
from ..structure import save_pruned
from ..train import Trainer, evaluate, is_main_process, read_checkpoint_meta
from ..train.distributed import barrier, broadcast_buffers, on_main_process, process_device, wrap_ddp
from .build import (
    RunData,
    arch_spec,
    example_input,
    input_shape,
    load_data,
    make_loaders,
    model_for_data,
    reuse_phase_weights,
    run_loss,
    save_weights,
)
from .checks import check_schedule
from .hooks import DivergenceGuard, ElapsedTime
from .masked import MASKED_FILE, finish_masked, save_masked_model
from .results import RESULT_FILE, applied_decay, common_fields, write_result
from .rundir import config_hash, prepare_run_dir
from .snapshot import LATENCY_THREADS, snapshot
from .sparse_learning import run_sparse_learning

__all__ = ["BASE_SECTIONS", "run_prune_job"]

#: The config sections the base model depends on (its ``base.json`` records their hash).
BASE_SECTIONS = ("data", "model", "pretrain")


def _masked_metrics(final: dict[str, Any], pruner: Pruner) -> dict[str, Any] | None:
    """The trainer's last test metrics when they are those of the masked model (no decay was completed by
    the end of training, one process); None when it must be evaluated again."""
    if pruner.forced_at_finish != 0 or final.get("top1") is None or torch.distributed.is_initialized():
        return None
    return final


def _has_checkpoint(folder: Path) -> bool:
    try:
        read_checkpoint_meta(folder / "checkpoint")
        return True
    except FileNotFoundError:
        return False


def _base_model(
    cfg: RunConfig, splits: RunData, run_dir: Path, *, progress: bool, console: Console
) -> tuple[nn.Module, dict[str, Any]]:
    """The model to prune and ``{epochs, time_s}`` of its pretraining (over all invocations)."""
    seed = (cfg.pretrain or cfg.finetune).seed
    model = model_for_data(cfg.model, splits, seed=seed)
    if cfg.model.weights is not None:
        return model, {"epochs": 0, "time_s": 0.0}
    base_file, meta_file = run_dir / "base.safetensors", run_dir / "base.json"
    wanted = config_hash(cfg, BASE_SECTIONS)
    reused = reuse_phase_weights(model, base_file, meta_file, wanted, "trained for other model/data/pretrain settings")
    if reused is not None:
        return model, reused
    if cfg.pretrain is None:
        console.print("[yellow]no model.weights and no pretrain section: pruning an untrained model[/]")
        return model, {"epochs": 0, "time_s": 0.0}
    pre_cfg = cfg.model_copy(update={"finetune": cfg.pretrain})
    train_loader, test_loader = make_loaders(splits, pre_cfg)
    pre_dir = run_dir / "pretrain"
    console.print(f"[bold]phase 1/3: pretraining[/] the base model, {cfg.pretrain.epochs} epochs")
    clock = ElapsedTime()
    trainer = Trainer(
        wrap_ddp(model, process_device(cfg.pretrain.device)),
        train_loader,
        test_loader,
        cfg.pretrain,
        run_dir=pre_dir,
        hooks=[DivergenceGuard(), clock],
        loss=run_loss(pre_cfg),
        progress=progress,
        console=console,
    )
    trainer.fit(resume=_has_checkpoint(pre_dir))
    info = {"epochs": int(trainer.epoch), "time_s": clock.total_s}
    broadcast_buffers(model)
    if is_main_process():
        save_weights(model, base_file)
        write_json_atomic(meta_file, {"config_hash": wanted, **info})
    barrier()
    return model, info


def run_prune_job(
    cfg: RunConfig,
    *,
    resume: bool | Literal["auto"] = False,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run one pruning job as the config says and return the ``result.json`` record.

    Args:
        cfg: A run config with a ``prune`` section.
        resume: Continue the interrupted job in ``cfg.run_dir`` (``"auto"``: when there is one).
        overwrite: Clear a non-empty run folder for a fresh job.
        progress: Draw progress bars.
        console: Where to print.

    Raises:
        ConfigError: The config has no ``prune`` section.
        ScheduleError: The schedule cannot prune within the fine-tuning run (checked before any work).
        RunFolderError: See :func:`~decayprune.jobs.rundir.prepare_run_dir`.
        TrainingDivergedError: The loss became NaN/inf (``result.json`` is written with status ``failed``).

    Example:
        >>> from decayprune.config import load_config
        >>> cfg = load_config(None, values={"prune": {"target_macs_fraction": 0.5}})  # doctest: +SKIP
        >>> run_prune_job(cfg)["macs_pct"]  # doctest: +SKIP
        50.0
    """
    if cfg.prune is None:
        raise ConfigError(["prune: the config has no 'prune' section; see configs/prune_digits.yaml for an example"])
    console = console or Console()
    splits = load_data(cfg)
    train_loader, test_loader = make_loaders(splits, cfg)
    schedule = check_schedule(cfg.prune, epochs=cfg.finetune.epochs, steps_per_epoch=len(train_loader))
    main = is_main_process()
    on_main_process(lambda: prepare_run_dir(cfg, resume=resume, overwrite=overwrite))
    run_dir = cfg.run_dir
    record = common_fields(cfg, "prune", input_shape(splits))
    loss = run_loss(cfg)
    record.update(
        method=cfg.prune.method,
        criterion=cfg.prune.criterion,
        policy=cfg.prune.decay.policy,
        decay=applied_decay(schedule.fit(cfg.prune).decay),
    )
    if cfg.prune.prunes_elements():
        record.update(target_sparsity=cfg.prune.target_sparsity)
    else:
        record.update({f"target_{cfg.prune.budget_kind}_fraction": cfg.prune.remaining_fraction()})
    clock = ElapsedTime()
    pre: dict[str, Any] = {"epochs": 0, "time_s": 0.0}
    sparse: dict[str, Any] = {"epochs": 0, "time_s": 0.0}
    try:
        model, pre = _base_model(cfg, splits, run_dir, progress=progress, console=console)
        measured = time.perf_counter()
        example = example_input(splits)
        device = process_device(cfg.finetune.device)
        base = snapshot(model.to(device), test_loader, example, device, time_latency=main, loss=loss)
        measure_s = time.perf_counter() - measured
        sparse = run_sparse_learning(cfg, model, splits, run_dir, progress=progress, console=console)
        prune_dir = run_dir / "prune"
        pruner = Pruner(
            model.to("cpu"),
            example,
            cfg.prune,
            total_steps=cfg.finetune.epochs * len(train_loader),
            steps_per_epoch=len(train_loader),
            run_dir=prune_dir if main else None,  # events and SR statistics: rank 0 writes them
            calibration_data=train_loader,
            loss_fn=loss,
            schedule=schedule,
        )
        console.print(
            f"[bold]phase 2/3: pruning[/] {escape(cfg.prune.method)} + {escape(cfg.prune.decay.policy)} "
            + (
                f"to sparsity {100 * cfg.prune.target_sparsity:.0f}%, "
                if cfg.prune.target_sparsity is not None
                else f"to {100 * cfg.prune.remaining_fraction():.0f}% of the "
                f"{'MACs' if cfg.prune.budget_kind == 'macs' else 'latency'}, "
            )
            + f"{cfg.finetune.epochs} epochs of training with pruning and fine-tuning"
        )
        trainer = Trainer(
            wrap_ddp(model, device),
            train_loader,
            test_loader,
            cfg.finetune,
            run_dir=prune_dir,
            hooks=[pruner, DivergenceGuard(), clock],
            loss=loss,
            progress=progress,
            console=console,
        )
        fitted = trainer.fit(resume=_has_checkpoint(prune_dir))
    except TrainingDivergedError as exc:
        record.update(status="failed", error=str(exc), wall_time_s=pre["time_s"] + sparse["time_s"] + clock.total_s)
        if main:
            write_result(run_dir / RESULT_FILE, record)
        raise
    measured = time.perf_counter()
    broadcast_buffers(model)  # rank 0's batch-norm statistics everywhere: every rank compacts the same model
    masked = _masked_metrics(fitted.final, pruner) or evaluate(model, test_loader, device=device, loss_fn=loss)
    mask_fields = finish_masked(pruner) if pruner.masks is not None else {}  # element methods: no compaction
    if pruner.masks is None:
        pruner.compact()
    final = snapshot(model, test_loader, example, device, time_latency=main, loss=loss)
    if main and pruner.masks is not None:
        save_masked_model(pruner, run_dir)
    elif main:
        save_pruned(model.to("cpu"), run_dir / "pruned", arch=arch_spec(cfg.model, splits))
    measure_s += time.perf_counter() - measured
    if mask_fields:
        console.print(
            f"[bold]phase 3/3: masks[/] {mask_fields['pruned_weights']:,} of {mask_fields['masked_weights']:,} "
            f"weights at zero (sparsity {mask_fields['sparsity']:.1%}), saved to {MASKED_FILE}"
        )
    else:
        console.print(
            f"[bold]phase 3/3: compaction[/] removed {int(pruner.structures.pruned.sum())} channel groups: "
            f"MACs {base['macs']:,} -> {final['macs']:,}, params {base['params']:,} -> {final['params']:,}"
        )
    record.update(mask_fields)
    record.update(
        base=base,
        final=final,
        latency_threads=LATENCY_THREADS,
        masked_top1=float(masked["top1"]),
        macs_pct=100.0 * final["macs"] / base["macs"],
        params_pct=100.0 * final["params"] / base["params"],
        delta_top1=final["top1"] - base["top1"],
        **({"latency_budget": pruner.budget_result} if pruner.budget_result else {}),
        releases=int(pruner.engine.releases),
        pruned_structures=int(pruner.structures.pruned.sum()),
        epochs={"pretrain": pre["epochs"], "sparse_learning": sparse["epochs"], "finetune": int(trainer.epoch)},
        phase_time_s={
            "pretrain": pre["time_s"],
            "sparse_learning": sparse["time_s"],
            "finetune": clock.total_s,
            "measure": measure_s,
        },
        wall_time_s=pre["time_s"] + sparse["time_s"] + clock.total_s + measure_s,
    )
    if main:
        record = write_result(run_dir / RESULT_FILE, record)
    barrier()  # the other ranks return once result.json is there
    return record
