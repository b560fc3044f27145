"""What every command shares: the :class:`Command` shape, argument helpers, output and exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from ..config import RunConfig, load_config
from ..train.distributed import launched_rank

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USER_ERROR",
    "Command",
    "add_progress_option",
    "add_resume_options",
    "add_run_options",
    "add_threads_option",
    "apply_threads",
    "device_name",
    "input_shape",
    "make_console",
    "metric_table",
    "non_negative_int",
    "percent",
    "positive_float",
    "positive_int",
    "resolve_run_config",
    "show_progress",
]

EXIT_OK = 0
#: Bad input the user can fix (config, files, options): one ``error: ...`` line on stderr.
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Command:
    """One sub-command: its word, one-line help, longer description, options and handler.

    Example:
        >>> hello = Command("hello", "say hello", lambda parser: None, lambda args: 0)
        >>> hello.run(argparse.Namespace())
        0
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


def make_console(*, stderr: bool = False) -> Console:
    """A console that prints whole lines: on a terminal as usual, redirected without 80-column wrapping.

    Quiet on every process but rank 0 of a ``torchrun`` launch.
    """
    stream = sys.stderr if stderr else sys.stdout
    terminal = hasattr(stream, "isatty") and stream.isatty()
    # Under a launcher (torchrun) only rank 0 prints: the others would repeat every line.
    quiet = launched_rank() != 0
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=None if terminal else 160, quiet=quiet)


def show_progress(args: argparse.Namespace, console: Console) -> bool:
    """Progress display unless ``--no-progress``: a live bar on a terminal, only per-epoch lines elsewhere."""
    return not getattr(args, "no_progress", False)


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``."""
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="quiet training: no progress bar and no per-epoch lines (when not on a terminal there is no bar anyway).",
    )


def add_run_options(parser: argparse.ArgumentParser, *, run_folder: bool = True) -> None:
    """Add ``--config``, ``--set``, ``--data-dir`` and, with ``run_folder``, ``--name`` and ``--output-dir``."""
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        metavar="FILE",
        help=f"YAML run config (keys: {', '.join(RunConfig.model_fields)}). "
        "Without it the defaults are used: the embedded 'digits' data and 'small_cnn'. model.name may also be "
        "package.module:factory, transformers:<Config, model class or folder>, timm:NAME or torchvision:NAME "
        "(sizes in model.kwargs); loss.name: cross_entropy, causal_lm, token_classification "
        "(see configs/prune_tiny_lm.yaml).",
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
            "--output-dir", type=Path, metavar="DIR", help="folder that holds run folders (config key 'output_dir')."
        )
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="folder holding the dataset files (config key 'data.data_dir')."
    )


def add_threads_option(parser: argparse.ArgumentParser, default: int | None = None) -> None:
    """``--threads N``: torch CPU threads for the whole command (read back with :func:`apply_threads`)."""
    shown = f"default: {default}" if default else "default: torch's choice, one per core"
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=default,
        metavar="N",
        help=f"torch CPU threads ({shown}); on a shared or small machine fewer threads are often faster.",
    )


@contextmanager
def apply_threads(args: argparse.Namespace) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(args.threads)`` when given (restored after)."""
    before = torch.get_num_threads()
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def add_resume_options(parser: argparse.ArgumentParser) -> None:
    """``--resume`` and ``--overwrite`` (safe run folders, :mod:`decayprune.jobs.rundir`)."""
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUTPUT_DIR/NAME; without --config its saved config.yaml is used. A change "
        "of a setting that alters the result is refused, naming the keys.",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh even if OUTPUT_DIR/NAME holds a run (its files are deleted).",
    )


def resolve_run_config(args: argparse.Namespace, *, config_path: Path | None = None) -> RunConfig:
    """Build the run config from ``--config``, ``--set`` and the dedicated options.

    With ``--resume`` and no ``--config``, the run folder's saved ``config.yaml`` is the base.

    Raises:
        ConfigError: If the config is missing or invalid.
    """
    values: dict[str, Any] = {}
    if getattr(args, "name", None) is not None:
        values["name"] = args.name
    if getattr(args, "output_dir", None) is not None:
        values["output_dir"] = str(args.output_dir)
    if getattr(args, "data_dir", None) is not None:
        values["data.data_dir"] = str(args.data_dir)
    path = args.config if args.config is not None else config_path
    if path is None and getattr(args, "resume", False):
        where = [o for o in args.overrides if o.split("=", 1)[0].strip() in ("name", "output_dir")]
        probe = load_config(None, where, values={k: v for k, v in values.items() if k in ("name", "output_dir")})
        saved = probe.run_dir / "config.yaml"
        path = saved if saved.is_file() else None
    return load_config(path, args.overrides, values=values)


def metric_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    """A two-column (metric, value) table."""
    table = Table(title=title, show_header=True, header_style="bold", min_width=len(title) + 4)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in rows:
        table.add_row(key, value)
    return table


def percent(value: float) -> str:
    """``12.34%``."""
    return f"{value:.2f}%"


def _int(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an int >= {low}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    return _int(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    return _int(text, 0)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def input_shape(text: str) -> tuple[int, int, int]:
    """argparse type: ``C,H,W`` as three positive ints (each at most 4096)."""
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1 or max(dims) > 4096:
        raise argparse.ArgumentTypeError(f"expected C,H,W as three ints from 1 to 4096 (e.g. 3,32,32), got {text!r}")
    return dims  # type: ignore[return-value]


def device_name(text: str) -> str:
    """argparse type: a torch device string (cpu, cuda, cuda:N, mps) or ``auto``."""
    if text == "auto":
        return text
    try:
        torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N, mps or auto, got {text!r}") from None
    return text
