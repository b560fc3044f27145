"""The ``decayprune`` command line: ``train``, ``eval``, ``measure``, ``prune`` and ``demo``.

Sub-commands live in a registry (:func:`register_command`); each is one function taking the
parsed arguments and a console and returning an exit code. The helpers that turn a
:class:`~decayprune.config.RunConfig` into data and a model live in :mod:`decayprune.runs`
(re-exported here); ``prune`` and ``demo`` are registered by :mod:`decayprune.prune_commands`.

User errors (a bad config, a missing data folder or file, wrong option values) print one
``error: ...`` message on stderr and return exit code 2; ``--debug`` shows the traceback instead.

Example:
    >>> main(["measure", "--model", "small_cnn", "--input-shape", "1,8,8", "--repeats", "1"])
    ... # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import difflib
import json
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from decayprune.config import ConfigError, RunConfig, dump_config, load_config
from decayprune.data import list_datasets
from decayprune.measure import count_cost, format_count, measure_latency
from decayprune.runs import (
    CLIError,
    build_model,
    example_input,
    load_splits,
    load_weights,
    make_loaders,
    model_kwargs,
    package_version,
    save_weights,
)
from decayprune.models import create, list_models
from decayprune.train import (
    Trainer,
    evaluate,
    read_checkpoint_meta,
    resolve_device,
    write_json_atomic,
)

__all__ = [
    "CLIError",
    "Command",
    "add_run_options",
    "build_model",
    "build_parser",
    "example_input",
    "load_splits",
    "load_weights",
    "main",
    "make_loaders",
    "register_command",
    "resolve_run_config",
    "save_weights",
]

RESULT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Command:
    """One sub-command: its name, help, argument setup and handler."""

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Console], int]


COMMANDS: dict[str, Command] = {}


def register_command(
    name: str,
    *,
    help: str,  # the same keyword as argparse's add_parser
    add_arguments: Callable[[argparse.ArgumentParser], None],
    description: str | None = None,
) -> Callable[[Callable[[argparse.Namespace, Console], int]], Callable[[argparse.Namespace, Console], int]]:
    """Register a sub-command handler ``fn(args, console) -> exit code``.

    Args:
        name: The sub-command word, e.g. ``"prune"``.
        help: One line shown in ``decayprune --help``.
        add_arguments: Adds the sub-command's options to its parser.
        description: Longer text for ``decayprune NAME --help`` (defaults to ``help``).

    Returns:
        A decorator that records the handler and returns it unchanged.

    Example:
        >>> @register_command("doc-hello", help="say hello", add_arguments=lambda p: None)
        ... def _hello(args, console):
        ...     console.print("hello")
        ...     return 0
        >>> "doc-hello" in COMMANDS
        True
        >>> del COMMANDS["doc-hello"]
    """

    def decorator(
        fn: Callable[[argparse.Namespace, Console], int],
    ) -> Callable[[argparse.Namespace, Console], int]:
        if name in COMMANDS:
            raise ValueError(f"sub-command {name!r} is already registered")
        COMMANDS[name] = Command(name, help, description or help, add_arguments, fn)
        return fn

    return decorator


# ----------------------------------------------------------------------------- shared helpers


def add_run_options(
    parser: argparse.ArgumentParser, *, config_required: bool = False, run_folder: bool = True
) -> None:
    """Add the options every config-driven command shares.

    ``--config``, ``--set``, ``--data-dir`` and, with ``run_folder``, ``--name`` and
    ``--output-dir``; read them back with :func:`resolve_run_config`.
    """
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        metavar="FILE",
        required=config_required,
        help=f"YAML run config (keys: {', '.join(RunConfig.model_fields)}). "
        "Without it the defaults are used: the embedded 'digits' data and 'small_cnn'.",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value by its dotted key, e.g. --set train.lr=0.05 "
        "--set data.train_subset=500 (values are read as YAML; repeatable).",
    )
    if run_folder:
        parser.add_argument(
            "--name", metavar="NAME", help="run name (config key 'name'); the run folder is OUTPUT_DIR/NAME."
        )
        parser.add_argument(
            "--output-dir",
            type=Path,
            metavar="DIR",
            help="folder that holds run folders (config key 'output_dir').",
        )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="folder holding the dataset files (config key 'data.data_dir').",
    )


def resolve_run_config(args: argparse.Namespace, *, config_path: Path | None = None) -> RunConfig:
    """Build the run config from ``--config``, ``--set`` and the dedicated options.

    Args:
        args: Parsed arguments of a parser set up with :func:`add_run_options`.
        config_path: Use this YAML file when ``args.config`` is unset.

    Raises:
        ConfigError: If the config is missing or invalid.
    """
    values: dict[str, Any] = {}
    if getattr(args, "name", None) is not None:
        values["name"] = args.name
    if getattr(args, "output_dir", None) is not None:
        values["output_dir"] = str(args.output_dir)
    if args.data_dir is not None:
        values["data.data_dir"] = str(args.data_dir)
    path = args.config if args.config is not None else config_path
    return load_config(path, args.overrides, values=values)


def _table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=True, header_style="bold", min_width=len(title) + 4)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in rows:
        table.add_row(key, value)
    return table


def _percent(value: float) -> str:
    return f"{value:.2f}%"


# ----------------------------------------------------------------------------- train


_RUN_ARTIFACTS = ("result.json", "model.safetensors", "metrics.jsonl", "config.yaml")


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUTPUT_DIR/NAME from its checkpoint/ folder; without --config "
        "the run's saved config.yaml is used (--set still applies, e.g. to add epochs).",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh even if OUTPUT_DIR/NAME already holds a run (its results are replaced).",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="quiet training: no progress bar and no per-epoch lines (when the output is not a "
        "terminal, only the per-epoch lines are printed anyway).",
    )


def train_result_record(
    cfg: RunConfig,
    final: dict[str, float],
    cost: Any,
    *,
    epochs_run: int,
    wall_time_s: float,
    input_shape: Sequence[int],
) -> dict[str, Any]:
    """The content of a training run's ``result.json``.

    Fields (stable; readers should ignore fields they do not know):
        schema (int), kind ("train"), name, dataset, model, width, seed (train.seed),
        epochs (epochs completed, counting those before a resume), top1 / top5 (test
        accuracy in percent, 0-100),
        test_loss, test_samples, macs (multiply-accumulates per image), params,
        input_shape ([C, H, W]), wall_time_s (training time of this invocation),
        decayprune_version.
    """
    return {
        "schema": RESULT_SCHEMA_VERSION,
        "kind": "train",
        "name": cfg.name,
        "dataset": cfg.data.name,
        "model": cfg.model.name,
        "width": cfg.model.width,
        "seed": cfg.train.seed,
        "epochs": int(epochs_run),
        "top1": float(final["top1"]),
        "top5": float(final["top5"]),
        "test_loss": float(final["loss"]),
        "test_samples": int(final["samples"]),
        "macs": int(cost.macs),
        "params": int(cost.params),
        "input_shape": [int(v) for v in input_shape],
        "wall_time_s": float(wall_time_s),
        "decayprune_version": package_version(),
    }


def _prepare_run_dir(cfg: RunConfig, *, resume: bool, overwrite: bool) -> Path:
    run_dir = cfg.run_dir
    checkpoint = run_dir / "checkpoint"
    if resume:
        try:
            read_checkpoint_meta(checkpoint)
        except FileNotFoundError as exc:
            raise CLIError(
                f"cannot resume: {exc}. Train without --resume first, "
                "or pick the run with --name / --output-dir."
            ) from None
        return run_dir
    if not overwrite and (checkpoint.exists() or (run_dir / "result.json").exists()):
        raise CLIError(
            f"run folder '{run_dir}' already holds a run; use --resume to continue it, "
            "--name to start another, or --overwrite to replace it"
        )
    if overwrite:
        for name in _RUN_ARTIFACTS:
            (run_dir / name).unlink(missing_ok=True)
        if checkpoint.is_dir():
            shutil.rmtree(checkpoint)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


@register_command(
    "train",
    help="train a model from a config (defaults: digits + small_cnn)",
    description="Train a model from a config. The run folder OUTPUT_DIR/NAME receives config.yaml "
    "(the resolved config), metrics.jsonl (one line per epoch), checkpoint/ (for --resume), "
    "model.safetensors (final weights) and result.json (final top-1/top-5, MACs, params, wall time).",
    add_arguments=_train_arguments,
)
def _cmd_train(args: argparse.Namespace, console: Console) -> int:
    saved = None
    if args.resume and args.config is None:
        probe = resolve_run_config(args)  # only for the run folder named by --name/--output-dir
        if (probe.run_dir / "config.yaml").is_file():
            saved = probe.run_dir / "config.yaml"
    cfg = resolve_run_config(args, config_path=saved)
    splits = load_splits(cfg)
    model = build_model(
        cfg.model,
        num_classes=splits.num_classes,
        in_channels=splits.in_channels,
        image_size=splits.image_size,
        seed=cfg.train.seed,
    )
    run_dir = _prepare_run_dir(cfg, resume=args.resume, overwrite=args.overwrite)
    dump_config(cfg, run_dir / "config.yaml")
    train_loader, test_loader = make_loaders(splits, cfg)
    console.print(
        f"[bold]train[/] {escape(cfg.model.name)} (width {cfg.model.width:g}) on {escape(cfg.data.name)}: "
        f"{len(splits.train_labels)} train / {len(splits.test_labels)} test images -> {escape(str(run_dir))}",
        soft_wrap=True,
    )
    trainer = Trainer(
        model,
        train_loader,
        test_loader,
        cfg.train,
        run_dir=run_dir,
        progress=not args.no_progress,
        console=console,
    )
    result = trainer.fit(resume=args.resume)
    model.eval()
    save_weights(model, run_dir / "model.safetensors")
    cost = count_cost(model.to("cpu"), example_input(splits))
    record = train_result_record(
        cfg,
        result.final,
        cost,
        epochs_run=trainer.epoch,
        wall_time_s=result.wall_time_s,
        input_shape=(splits.in_channels, *splits.image_size),
    )
    write_json_atomic(run_dir / "result.json", record)
    console.print(
        _table(
            f"{cfg.name}: {cfg.model.name} on {cfg.data.name}",
            [
                ("top-1", _percent(record["top1"])),
                ("top-5", _percent(record["top5"])),
                ("test loss", f"{record['test_loss']:.4f}"),
                ("MACs", format_count(record["macs"])),
                ("params", format_count(record["params"])),
                ("epochs", str(record["epochs"])),
                ("wall time", f"{record['wall_time_s']:.1f} s"),
            ],
        )
    )
    console.print(f"results written to {escape(str(run_dir))}")
    return 0


# ----------------------------------------------------------------------------- eval


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser, run_folder=False)
    parser.add_argument(
        "--run",
        type=Path,
        metavar="DIR",
        help="a run folder written by 'train': uses DIR/config.yaml (unless --config) and "
        "DIR/model.safetensors (unless --weights).",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="a .safetensors file of weights for the configured model (required without --run).",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the metrics as one JSON object instead of a table."
    )


@register_command(
    "eval",
    help="evaluate weights on the test split of the configured dataset (top-1 / top-5)",
    add_arguments=_eval_arguments,
)
def _cmd_eval(args: argparse.Namespace, console: Console) -> int:
    weights = args.weights
    config_path = None
    if args.run is not None:
        if not args.run.is_dir():
            raise CLIError(f"--run: folder '{args.run}' does not exist")
        config_path = args.run / "config.yaml" if (args.run / "config.yaml").is_file() else None
        weights = weights if weights is not None else args.run / "model.safetensors"
    if weights is None:
        raise CLIError("eval needs --weights FILE (or --run DIR of a finished training run)")
    cfg = resolve_run_config(args, config_path=config_path)
    if not Path(weights).is_file():
        raise FileNotFoundError(f"weights file '{weights}' does not exist")
    splits = load_splits(cfg)
    model = build_model(
        cfg.model,
        num_classes=splits.num_classes,
        in_channels=splits.in_channels,
        image_size=splits.image_size,
    )
    load_weights(model, weights)
    device = resolve_device(cfg.train.device)
    _, test_loader = make_loaders(splits, cfg)
    metrics = evaluate(model.to(device), test_loader, device=device)
    if args.json:
        print(json.dumps({k: int(v) if k == "samples" else float(v) for k, v in metrics.items()}))
        return 0
    console.print(
        _table(
            f"{cfg.model.name} on {cfg.data.name} (test split)",
            [
                ("top-1", _percent(metrics["top1"])),
                ("top-5", _percent(metrics["top5"])),
                ("loss", f"{metrics['loss']:.4f}"),
                ("samples", str(int(metrics["samples"]))),
            ],
        )
    )
    return 0


# ----------------------------------------------------------------------------- measure


def _input_shape(text: str) -> tuple[int, int, int]:
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise argparse.ArgumentTypeError(
            f"expected C,H,W as three positive ints (e.g. 3,32,32), got {text!r}"
        )
    return dims  # type: ignore[return-value]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _measure_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        metavar="NAME",
        help=f"model to measure; one of: {', '.join(list_models())}.",
    )
    parser.add_argument(
        "--input-shape",
        type=_input_shape,
        default=(3, 32, 32),
        metavar="C,H,W",
        help="shape of one input image (default: 3,32,32).",
    )
    parser.add_argument(
        "--num-classes",
        type=_positive_int,
        default=10,
        metavar="N",
        help="number of output classes (default: 10).",
    )
    parser.add_argument(
        "--width",
        type=_positive_float,
        default=1.0,
        metavar="W",
        help="channel-width multiplier (default: 1.0).",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="optional .safetensors weights to load (latency does not depend on them).",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=1,
        metavar="B",
        help="images per forward pass for latency (default: 1).",
    )
    parser.add_argument(
        "--warmup",
        type=_non_negative_int,
        default=5,
        metavar="K",
        help="untimed forward passes first (default: 5).",
    )
    parser.add_argument(
        "--repeats",
        type=_positive_int,
        default=20,
        metavar="K",
        help="timed forward passes; the median is reported (default: 20).",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        metavar="DEV",
        help="device to time on: cpu, cuda, cuda:N or auto (default: cpu).",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the measurements as one JSON object instead of a table."
    )


@register_command(
    "measure",
    help="count MACs and parameters of a model and time its forward pass",
    add_arguments=_measure_arguments,
)
def _cmd_measure(args: argparse.Namespace, console: Console) -> int:
    allowed = list_models()
    if args.model not in allowed:
        close = difflib.get_close_matches(args.model, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise CLIError(f"--model: got {args.model!r}; allowed: {', '.join(allowed)}{hint}")
    device = resolve_device(args.device)
    channels, height, width = args.input_shape
    model = create(
        args.model,
        num_classes=args.num_classes,
        in_channels=channels,
        width=args.width,
        **model_kwargs(args.model, (height, width)),
    )
    if args.weights is not None:
        load_weights(model, args.weights)
    model.eval()
    cost = count_cost(model, torch.zeros(1, channels, height, width))
    latency = measure_latency(
        model,
        torch.randn(args.batch_size, channels, height, width),
        warmup=args.warmup,
        repeats=args.repeats,
        device=device,
    )
    throughput = latency.throughput
    record = {
        "model": args.model,
        "width": args.width,
        "input_shape": [channels, height, width],
        "num_classes": args.num_classes,
        "macs": int(cost.macs),
        "params": int(cost.params),
        "batch_size": args.batch_size,
        "device": str(device),
        "latency_median_ms": float(latency.median_ms),
        "throughput_per_s": float(throughput),
    }
    if args.json:
        print(json.dumps(record))
        return 0
    console.print(
        _table(
            f"{args.model} (width {args.width:g}, input {channels}x{height}x{width})",
            [
                ("MACs / image", format_count(record["macs"])),
                ("params", format_count(record["params"])),
                (f"latency median (batch {args.batch_size}, {device})", f"{latency.median_ms:.3f} ms"),
                ("throughput", f"{throughput:,.1f} images/s"),
            ],
        )
    )
    return 0


# ----------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per registered command."""
    parser = argparse.ArgumentParser(
        prog="decayprune",
        description="Structured pruning for PyTorch built around the Decay Pruning Method. "
        f"Datasets: {', '.join(list_datasets())}. Models: {', '.join(list_models())}.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in COMMANDS.values():
        child = sub.add_parser(command.name, help=command.help, description=command.description)
        command.add_arguments(child)
        child.set_defaults(_handler=command.run)
    return parser


_USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, CLIError, FileNotFoundError, ValueError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input, 130 interrupted).

    Example:
        >>> main(["--version"])  # doctest: +SKIP
        decayprune 0.1.0
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help / --version (0) or usage errors (2): argparse printed them
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if getattr(args, "_handler", None) is None:
        parser.print_usage(sys.stderr)
        print("decayprune: error: choose a command (see decayprune --help)", file=sys.stderr)
        return 2
    console = Console(highlight=False)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)

    def show_warning(message: Warning | str, *_: Any, **__: Any) -> None:
        errors.print(f"[yellow]warning:[/] {escape(str(message))}")

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return int(args._handler(args, console))
    except _USER_ERRORS as exc:
        if args.debug:
            raise
        errors.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 2
    except KeyboardInterrupt:
        errors.print("interrupted")
        return 130


# Commands defined in other modules register themselves on import.
from decayprune import prune_commands as _prune_commands  # noqa: E402,F401
