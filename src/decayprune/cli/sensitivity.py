"""``decayprune sensitivity``: prune each layer alone at several ratios, evaluate, write curves and caps.

Li et al. (ICLR 2017): a layer whose accuracy falls fast when pruned alone should be pruned less.
Writes ``sensitivity.csv``, ``sensitivity.png`` and, with ``--max-drop``, ``layer_caps.json`` (use it
as ``prune.method_options.layer_caps`` of a ranking method).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..criteria import list_criteria
from ..errors import UserError
from ..jobs import example_input, make_loaders
from ..sensitivity import DEFAULT_RATIOS, sensitivity_curves, write_sensitivity
from ..train import evaluate, resolve_device
from . import eval as eval_command
from .common import Command, make_console, positive_float


def ratio_list(text: str) -> list[float]:
    """argparse type: comma-separated fractions, each strictly between 0 and 1.

    Example:
        >>> ratio_list("0.25, 0.5")
        [0.25, 0.5]
    """
    try:
        ratios = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        ratios = []
    if not ratios or not all(0 < r < 1 for r in ratios):
        raise argparse.ArgumentTypeError(
            f"expected fractions between 0 and 1, comma-separated (e.g. 0.2,0.5), got {text!r}"
        )
    return ratios


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The model options of ``eval`` plus criterion, ratios, output folder and ``--max-drop``."""
    eval_command.add_arguments(parser)
    parser.add_argument(
        "--criterion",
        default="l1_filter",
        metavar="NAME",
        help=f"which structures of a layer go first (default l1_filter); one of: {', '.join(list_criteria())}.",
    )
    parser.add_argument(
        "--ratios",
        type=ratio_list,
        default=list(DEFAULT_RATIOS),
        metavar="R,R,...",
        help="fractions of each layer to prune (default 0.1,...,0.9).",
    )
    parser.add_argument(
        "--output", type=Path, default=Path("sensitivity"), metavar="DIR", help="where the CSV, PNG and caps go."
    )
    parser.add_argument(
        "--max-drop",
        type=positive_float,
        default=None,
        metavar="POINTS",
        help="also write layer_caps.json: per layer, the largest ratio whose top-1 drop stays within POINTS.",
    )


def run(args: argparse.Namespace) -> int:
    """Compute the curves on the test split and write them."""
    if args.criterion not in list_criteria():
        raise UserError(f"unknown criterion '{args.criterion}'; allowed: {', '.join(list_criteria())}")
    cfg, model, splits = eval_command.load_for_eval(args)
    device = resolve_device(cfg.run_settings.device)
    train_loader, test_loader = make_loaders(splits, cfg)
    model = model.to(device).eval()
    rows = sensitivity_curves(
        model,
        example_input(splits).to(device),
        lambda m: float(evaluate(m, test_loader, device=device)["top1"]),
        criterion=args.criterion,
        ratios=args.ratios,
        calibration_data=train_loader,
    )
    paths = write_sensitivity(rows, args.output, max_drop=args.max_drop, title=f"{cfg.model.name} ({args.criterion})")
    console = make_console()
    for kind, path in paths.items():
        console.print(f"{kind}: {path}", markup=False)
    return 0


COMMAND = Command(
    "sensitivity",
    "per-layer pruning sensitivity curves (and layer caps) of a trained model",
    add_arguments,
    run,
    description=__doc__,
)
