"""``decayprune export``: write a trained or pruned model as files usable without the run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from ..errors import ExportError, WeightsError
from ..jobs import EXPORT_FORMATS, export_model, load_model_files
from .common import Command, make_console


def _formats(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in EXPORT_FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a comma list of {', '.join(EXPORT_FORMATS)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--run`` or ``--weights``, ``--output``, ``--format``."""
    parser.add_argument(
        "--run",
        type=Path,
        metavar="DIR",
        help="a finished prune run folder (its pruned model) or train run folder (its model).",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="a model file, e.g. pruned.safetensors, with its .json spec next to it.",
    )
    parser.add_argument(
        "--output", "-o", type=Path, required=True, metavar="DIR", help="folder to write the exports into."
    )
    parser.add_argument(
        "--format",
        dest="formats",
        type=_formats,
        default=["safetensors", "pt2"],
        metavar="LIST",
        help="comma list of safetensors (weights + JSON spec, reload with eval/measure --weights), pt2 "
        "(torch.export program, torch.export.load) and onnx (needs the 'onnx' package); default: safetensors,pt2.",
    )


def run(args: argparse.Namespace) -> int:
    """Load the model, export it, list the files."""
    if (args.run is None) == (args.weights is None):
        raise WeightsError("export needs exactly one of --run DIR or --weights FILE")
    source = args.run if args.run is not None else args.weights
    loaded = load_model_files(source)
    if args.output.resolve() == Path(source).resolve():
        raise ExportError("--output must be another folder than the run folder")
    written = export_model(loaded, args.output, formats=args.formats)
    console = make_console()
    for path in written:
        console.print(f"wrote {escape(str(path))}")
    return 0


COMMAND = Command(
    name="export",
    help="export a trained or pruned model (safetensors + JSON spec, torch.export, ONNX)",
    add_arguments=add_arguments,
    run=run,
)
