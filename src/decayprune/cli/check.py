"""``decayprune check``: can this model be pruned exactly? Which channel groups are refused, and why.

Prunes a copy of the model (random structures down to a MACs fraction, or a short sp+sr run with
``--steps``), compacts it and compares outputs; prints :func:`decayprune.jobs.model_check.format_report`.
Exit code 0 when the check passes, 1 when it fails (a refused model), 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

import torch
import yaml

from ..errors import UserError
from ..jobs.model_check import check_model, format_report
from ..models import resolve_model
from .common import Command, input_shape, make_console, non_negative_int, positive_float, positive_int

VERIFY_CHOICES: dict[str, bool | str] = {"auto": "auto", "true": True, "false": False}


def model_kwarg(text: str) -> tuple[str, Any]:
    """argparse type: ``KEY=VALUE`` with VALUE read as YAML (``hidden_size=32``, ``pretrained=false``).

    Example:
        >>> model_kwarg("num_hidden_layers=2")
        ('num_hidden_layers', 2)
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with KEY a Python name (e.g. hidden_size=32), got {text!r}"
        )
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(
            f"cannot read the value of {text!r} (expected a number, word or list)"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Model, example input, target and exactness options."""
    parser.add_argument(
        "--model",
        required=True,
        metavar="SPEC",
        help="a registered model name, package.module:factory, or transformers:<Name>Config (random weights).",
    )
    parser.add_argument(
        "--kwarg",
        dest="kwargs",
        type=model_kwarg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="argument for the model factory or transformers config (repeatable), e.g. num_hidden_layers=2.",
    )
    parser.add_argument(
        "--input-shape", type=input_shape, default=None, metavar="C,H,W", help="image input (default: 3,32,32)."
    )
    parser.add_argument(
        "--seq-len",
        type=positive_int,
        default=None,
        metavar="L",
        help="token input instead of an image: L random token ids below the model's vocab_size.",
    )
    parser.add_argument(
        "--target-macs-fraction",
        type=float,
        default=0.7,
        metavar="F",
        help="MACs to keep, between 0 and 1 (default 0.7).",
    )
    parser.add_argument("--tolerance", type=positive_float, default=1e-5, help="relative output error allowed.")
    parser.add_argument(
        "--verify",
        choices=sorted(VERIFY_CHOICES),
        default="true",
        help="empirical exactness check of the groups: every group (true), only risky ones (auto) or none.",
    )
    parser.add_argument(
        "--ignore-type",
        dest="ignored_types",
        action="append",
        default=[],
        metavar="CLASS",
        help="module class name kept whole (repeatable).",
    )
    parser.add_argument(
        "--steps",
        type=non_negative_int,
        default=0,
        help="run the whole Pruner (random method, sp+sr) for this many SGD steps instead of a one-shot mask.",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random structures and inputs.")
    parser.add_argument("--json", action="store_true", help="print the report as JSON.")


def example_inputs(model: torch.nn.Module, args: argparse.Namespace) -> torch.Tensor:
    """A batch of two: token ids (``--seq-len``) or images (``--input-shape``, default 3x32x32)."""
    generator = torch.Generator().manual_seed(args.seed)
    if args.seq_len is not None:
        if args.input_shape is not None:
            raise UserError("give either --seq-len (token input) or --input-shape (image input), not both")
        vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or 100)
        return torch.randint(0, vocab, (2, args.seq_len), generator=generator)
    shape = args.input_shape or (3, 32, 32)
    return torch.randn(2, *shape, generator=generator)


def run(args: argparse.Namespace) -> int:
    """Build the model, check it, print the report; 0 when it passes, 1 when it does not."""
    kwargs = dict(args.kwargs)
    try:
        model = resolve_model(args.model, **kwargs)
    except TypeError as exc:
        raise UserError(f"cannot build '{args.model}' with {kwargs}: {exc}") from None
    report = check_model(
        model.eval(),
        example_inputs(model, args),
        name=args.model,
        target_macs_fraction=args.target_macs_fraction,
        tolerance=args.tolerance,
        ignored_types=args.ignored_types,
        verify=VERIFY_CHOICES[args.verify],
        seed=args.seed,
        steps=args.steps,
    )
    console = make_console()
    if args.json:
        console.print_json(json.dumps(asdict(report) | {"macs_fraction": report.macs_fraction}, default=str))
    else:
        console.print(format_report(report), markup=False)
    return 0 if report.passed else 1


COMMAND = Command(
    "check",
    "can a model be pruned exactly? which channel groups are refused, and why",
    add_arguments,
    run,
    description=__doc__,
)
