"""The prune job: base model -> pruning run (selection, DPM decay, fine-tune) -> compaction -> report.

Used by ``decayprune prune``, ``decayprune demo`` and the benchmarks. Every phase writes into
the run folder and can be resumed: the base model is reused once ``base.safetensors`` exists,
and the pruning run continues from its last checkpoint.

``result.json`` fields (schema 1; readers ignore fields they do not know):
    kind ("prune"), name, dataset, model, method, policy, decay_steps, t_rate, t_len,
    seed, target_macs_fraction (fraction kept), base {top1, top5, macs, params, latency_ms},
    final {top1, top5, macs, params, latency_ms}, macs_pct / params_pct (final as % of base),
    delta_top1 (final - base, points), releases, pruned_structures, wall_time_s,
    decayprune_version.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from .runs import (
    build_model,
    example_input,
    load_splits,
    load_weights,
    make_loaders,
    package_version,
    save_weights,
)
from .config import RunConfig, dump_config
from .measure import count_cost, measure_latency
from .pruner import Pruner
from .structure import save_pruned
from .train import Trainer, evaluate, write_json_atomic
from .train.checkpoint import read_checkpoint_meta

RESULT_SCHEMA = 1


def _has_checkpoint(folder: Path) -> bool:
    try:
        read_checkpoint_meta(folder / "checkpoint")
        return True
    except FileNotFoundError:
        return False


def _snapshot(model: torch.nn.Module, test_loader: Any, example: torch.Tensor, device: str) -> dict[str, float]:
    """Accuracy, cost and CPU latency of ``model`` (batch-1 latency, eval mode)."""
    metrics = evaluate(model, test_loader, device=device)
    model_cpu = model.to("cpu")
    cost = count_cost(model_cpu, example)
    latency = measure_latency(model_cpu, example, warmup=3, repeats=10, device="cpu")
    model.to(device)
    return {
        "top1": float(metrics["top1"]),
        "top5": float(metrics["top5"]),
        "macs": int(cost.macs),
        "params": int(cost.params),
        "latency_ms": float(latency.median_ms),
    }


def _base_model(cfg: RunConfig, splits: Any, run_dir: Path, *, resume: bool, progress: bool, console: Console):
    seed = (cfg.pretrain or cfg.finetune).seed
    model = build_model(cfg.model, num_classes=splits.num_classes, in_channels=splits.in_channels,
                        image_size=splits.image_size, seed=seed)
    base_file = run_dir / "base.safetensors"
    if cfg.model.weights is not None:
        return model
    if base_file.is_file():
        load_weights(model, base_file)
        return model
    if cfg.pretrain is None:
        console.print("[yellow]no model.weights and no pretrain section: pruning an untrained model[/]")
        return model
    pre_cfg = cfg.model_copy(update={"finetune": cfg.pretrain})
    train_loader, test_loader = make_loaders(splits, pre_cfg)
    pre_dir = run_dir / "pretrain"
    trainer = Trainer(model, train_loader, test_loader, cfg.pretrain, run_dir=pre_dir, progress=progress,
                      console=console)
    trainer.fit(resume=resume and _has_checkpoint(pre_dir))
    save_weights(model, base_file)
    return model


def run_prune_job(cfg: RunConfig, *, resume: bool = False, progress: bool = True,
                  console: Console | None = None) -> dict[str, Any]:
    """Run one pruning job as the config says and return the ``result.json`` record.

    Args:
        cfg: A run config with a ``prune`` section.
        resume: Continue an interrupted job in the same run folder.
        progress: Draw progress bars.
        console: Where to print.

    Example:
        >>> from decayprune.config import load_config
        >>> cfg = load_config(None, ["prune.target_macs_fraction=0.5", "train.epochs=1"])  # doctest: +SKIP
        >>> run_prune_job(cfg)["final"]["macs"] < run_prune_job(cfg)["base"]["macs"]  # doctest: +SKIP
        True
    """
    if cfg.prune is None:
        raise ValueError("the config has no 'prune' section; add one (method, target_macs_fraction or speed_up, decay)")
    console = console or Console()
    start = time.perf_counter()
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")
    splits = load_splits(cfg)
    example = example_input(splits)
    model = _base_model(cfg, splits, run_dir, resume=resume, progress=progress, console=console)
    train_loader, test_loader = make_loaders(splits, cfg)
    device = _device(cfg)
    base = _snapshot(model.to(device), test_loader, example, device)
    prune_dir = run_dir / "prune"
    pruner = Pruner(model.to("cpu"), example, cfg.prune, total_steps=max(1, cfg.finetune.epochs * len(train_loader)),
                    steps_per_epoch=len(train_loader), run_dir=prune_dir)
    trainer = Trainer(model, train_loader, test_loader, cfg.finetune, run_dir=prune_dir, hooks=[pruner],
                      progress=progress, console=console)
    fit = trainer.fit(resume=resume and _has_checkpoint(prune_dir))
    masked = evaluate(model, test_loader, device=device)
    pruner.compact()
    final = _snapshot(model, test_loader, example, device)
    arch = {"name": cfg.model.name, "kwargs": {"num_classes": splits.num_classes, "in_channels": splits.in_channels,
                                               "width": cfg.model.width}}
    save_pruned(model.to("cpu"), run_dir / "pruned", arch=arch)
    decay = cfg.prune.decay
    record = {
        "schema": RESULT_SCHEMA,
        "kind": "prune",
        "name": cfg.name,
        "dataset": cfg.data.name,
        "model": cfg.model.name,
        "method": cfg.prune.method,
        "policy": decay.policy,
        "decay_steps": decay.steps,
        "t_rate": decay.t_rate,
        "t_len": decay.t_len,
        "seed": cfg.finetune.seed,
        "target_macs_fraction": cfg.prune.remaining_macs_fraction(),
        "base": base,
        "final": final,
        "masked_top1": float(masked["top1"]),
        "macs_pct": 100.0 * final["macs"] / base["macs"],
        "params_pct": 100.0 * final["params"] / base["params"],
        "delta_top1": final["top1"] - base["top1"],
        "releases": pruner.engine.releases,
        "pruned_structures": int(pruner.structures.pruned.sum()),
        "epochs": fit.epochs_run,
        "wall_time_s": time.perf_counter() - start,
        "decayprune_version": package_version(),
    }
    write_json_atomic(run_dir / "result.json", record)
    return record


def _device(cfg: RunConfig) -> str:
    from .train import resolve_device

    return str(resolve_device(cfg.finetune.device))
