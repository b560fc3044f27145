"""The ``decayprune`` command line: one module per command, thin (parse -> job -> print).

Each command module (``train``, ``prune``, ``eval``, ``measure``, ``export``, ``check``, ``criteria``,
``sensitivity``, ``sr_stats``, ``demo``, ``bench``, ``report``) defines one ``COMMAND``
(:class:`~decayprune.cli.common.Command`: name, help, ``add_arguments(parser)``,
``run(args) -> exit code``). To add a command, write ``cli/<name>.py`` with its ``COMMAND`` and
add the module to :data:`COMMAND_MODULES` below: one line.

Errors a user can fix (:class:`decayprune.errors.UserError` and bad files) print one
``error: ...`` line on stderr and exit 2; ``--debug`` shows the traceback instead.

Example:
    >>> main(["measure", "--model", "small_cnn", "--input-shape", "1,8,8", "--repeats", "1"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from rich.markup import escape

from ..data import list_datasets
from ..jobs import package_version
from ..models import list_models
from ..train.distributed import launched_world_size
from . import bench, check, criteria, demo, eval, export, measure, prune, report, sensitivity, sr_stats, train
from .common import EXIT_INTERRUPTED, EXIT_USER_ERROR, Command, make_console

__all__ = ["COMMANDS", "COMMAND_MODULES", "build_parser", "main"]

#: Command modules in the order ``decayprune --help`` lists them.
COMMAND_MODULES = (train, prune, eval, measure, export, check, criteria, sensitivity, sr_stats, demo, bench, report)

COMMANDS: dict[str, Command] = {module.COMMAND.name: module.COMMAND for module in COMMAND_MODULES}

#: Commands that may run as several processes under ``torchrun`` (DistributedDataParallel).
DISTRIBUTED_COMMANDS = ("prune",)

#: Exceptions shown as one ``error:`` line (exit 2): user errors, and files or folders that are
#: missing, unreadable or in the way (OSError).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


def _printable(text: str) -> str:
    """``text`` with control characters other than line breaks (e.g. terminal escapes) shown escaped.

    Example:
        >>> print(_printable("bad " + chr(27) + "[2J value"))
        bad \\x1b[2J value
    """
    return "".join(c if c == "\n" or c.isprintable() else repr(c)[1:-1] for c in text)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="decayprune",
        description="Structured pruning for PyTorch built around the Decay Pruning Method. "
        f"Datasets: {', '.join(list_datasets())}. Models: {', '.join(list_models())}.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in COMMANDS.values():
        child = sub.add_parser(command.name, help=command.help, description=command.description or command.help)
        command.add_arguments(child)
        child.set_defaults(_run=command.run)
    return parser


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
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USER_ERROR)
    if getattr(args, "_run", None) is None:
        parser.print_usage(sys.stderr)
        print("decayprune: error: choose a command (see decayprune --help)", file=sys.stderr)
        return EXIT_USER_ERROR
    errors = make_console(stderr=True)
    if launched_world_size() > 1 and args.command not in DISTRIBUTED_COMMANDS:
        errors.print(
            f"[bold red]error:[/] decayprune {args.command} runs in one process; of the commands only "
            f"{', '.join(DISTRIBUTED_COMMANDS)} may be launched with torchrun (WORLD_SIZE={launched_world_size()})"
        )
        return EXIT_USER_ERROR

    def show_warning(message: Warning | str, *_: Any, **__: Any) -> None:
        errors.print(f"[yellow]warning:[/] {escape(str(message))}")

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return int(args._run(args))
    except USER_ERRORS as exc:
        if args.debug:
            raise
        errors.print(f"[bold red]error:[/] {escape(_printable(str(exc) or type(exc).__name__))}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        errors.print("interrupted")
        return EXIT_INTERRUPTED
