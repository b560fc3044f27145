"""``decayprune eval``: top-1 / top-5 of a trained or pruned model on the configured test split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch.nn as nn

from ..config import RunConfig
from ..data import DatasetSplits
from ..errors import RunFolderError, WeightsError
from ..jobs import build_model, find_model_files, load_model_files, load_splits, load_weights, make_loaders
from ..train import evaluate, resolve_device
from .common import Command, add_run_options, make_console, metric_table, percent, resolve_run_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--run`` or ``--weights``, config options, ``--json``."""
    add_run_options(parser, run_folder=False)
    parser.add_argument(
        "--run",
        type=Path,
        metavar="DIR",
        help="a finished train or prune run folder: uses DIR/config.yaml (unless --config) and its model "
        "(pruned.safetensors + pruned.json of a prune run, model.safetensors of a train run).",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="a .safetensors file: a pruned model with its .json spec next to it, or plain weights of the "
        "configured model (required without --run).",
    )
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object instead of a table.")


def _check_fits(arch: dict, splits: DatasetSplits, source: Path) -> None:
    kwargs = arch.get("kwargs", {})
    for key, have in (("num_classes", splits.num_classes), ("in_channels", splits.in_channels)):
        if key in kwargs and kwargs[key] != have:
            raise WeightsError(f"'{source}' was built for {key}={kwargs[key]}, the dataset has {have}; check data.name")


def load_for_eval(args: argparse.Namespace) -> tuple[RunConfig, nn.Module, DatasetSplits]:
    """The config, the model and the data that ``--run`` / ``--weights`` / ``--config`` name."""
    config_path = None
    model_path = args.weights
    if args.run is not None:
        if not args.run.is_dir():
            raise RunFolderError(f"--run: folder '{args.run}' does not exist")
        config_path = args.run / "config.yaml" if (args.run / "config.yaml").is_file() else None
        model_path = model_path or args.run
    if model_path is None:
        raise WeightsError("eval needs --weights FILE or --run DIR (a finished train or prune run)")
    cfg = resolve_run_config(args, config_path=config_path)
    splits = load_splits(cfg)
    if find_model_files(model_path) is not None:
        loaded = load_model_files(model_path)
        _check_fits(loaded.arch, splits, loaded.source)
        return cfg, loaded.model, splits
    if Path(model_path).is_dir():
        load_model_files(model_path)  # raises WeightsError naming what a run folder should hold
    model = build_model(
        cfg.model, num_classes=splits.num_classes, in_channels=splits.in_channels, image_size=splits.image_size
    )
    load_weights(model, model_path)
    return cfg, model, splits


def run(args: argparse.Namespace) -> int:
    """Evaluate and print a table (or JSON)."""
    cfg, model, splits = load_for_eval(args)
    device = resolve_device(cfg.run_settings.device)
    _, test_loader = make_loaders(splits, cfg)
    metrics = evaluate(model.to(device), test_loader, device=device)
    if args.json:
        print(json.dumps({k: int(v) if k == "samples" else float(v) for k, v in metrics.items()}))
        return 0
    make_console().print(
        metric_table(
            f"{cfg.model.name} on {cfg.data.name} (test split)",
            [
                ("top-1", percent(metrics["top1"])),
                ("top-5", percent(metrics["top5"])),
                ("loss", f"{metrics['loss']:.4f}"),
                ("samples", str(int(metrics["samples"]))),
            ],
        )
    )
    return 0


COMMAND = Command(
    name="eval",
    help="evaluate a trained or pruned model on the test split (top-1 / top-5)",
    add_arguments=add_arguments,
    run=run,
)
