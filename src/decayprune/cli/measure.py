"""``decayprune measure``: MACs, parameters and forward latency (median and IQR) of a model.

For a pruned model (a prune run, or a pruned file whose spec names its architecture) it also
builds the unpruned architecture and reports the latency speed-up (base / pruned, timed in
interleaved rounds: median and interquartile range over rounds) next to the MACs ratio, on the
CPU and, when one is present, on CUDA.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import UserError
from ..jobs import find_model_files, load_model_files, load_weights, model_kwargs
from ..measure import SpeedUp, compare_latency, count_cost, format_count, measure_latency
from ..models import create, list_models
from ..registry import did_you_mean
from ..train import resolve_device
from .common import (
    Command,
    device_name,
    input_shape,
    make_console,
    metric_table,
    non_negative_int,
    positive_float,
    positive_int,
)

MAX_WIDTH = 64.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Model selection (``--model`` or ``--run`` / ``--weights`` with a spec) and timing options."""
    parser.add_argument("--model", metavar="NAME", help=f"model to build; one of: {', '.join(list_models())}.")
    parser.add_argument(
        "--run",
        type=Path,
        metavar="DIR",
        help="measure the model of a finished train or prune run folder (the pruned model of a prune run).",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="with --model: .safetensors weights to load; alone: a pruned model file with its .json spec next to it.",
    )
    parser.add_argument(
        "--input-shape",
        type=input_shape,
        metavar="C,H,W",
        help="shape of one input image (default: 3,32,32, or the shape a model file records).",
    )
    parser.add_argument(
        "--num-classes",
        type=positive_int,
        default=10,
        metavar="N",
        help="number of output classes for --model (default: 10).",
    )
    parser.add_argument(
        "--width",
        type=positive_float,
        default=1.0,
        metavar="W",
        help=f"channel-width multiplier for --model (default: 1.0, at most {MAX_WIDTH:g}).",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=1,
        metavar="B",
        help="images per forward pass for latency (default: 1).",
    )
    parser.add_argument(
        "--warmup", type=non_negative_int, default=10, metavar="K", help="untimed forward passes first (default: 10)."
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=100,
        metavar="K",
        help="timed forward passes; their median and IQR are reported (default: 100).",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        metavar="T",
        help="torch CPU threads while timing (default: 1; recorded in the output).",
    )
    parser.add_argument(
        "--device",
        type=device_name,
        default=None,
        metavar="DEV",
        help="device to time on: cpu, cuda, cuda:N or auto (default: cpu; a pruned model's speed-up is also "
        "timed on cuda when one is present).",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="dtype of the speed-up timing on CUDA (default: float32; the CPU always times float32).",
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="time the speed-up on CUDA in channels_last memory format."
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=5,
        metavar="R",
        help="interleaved base/pruned rounds of the speed-up, each of --repeats / R passes (default: 5).",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the measurements as one JSON object instead of a table."
    )


def _model(args: argparse.Namespace) -> tuple[nn.Module, str, tuple[int, int, int], nn.Module | None]:
    """The model to measure, its label, the input shape and (for a pruned model) its unpruned architecture."""
    path = args.run if args.run is not None else (args.weights if args.model is None else None)
    if path is not None:
        if args.model is not None:
            raise UserError("--run and --model exclude each other: a run folder names its model")
        if find_model_files(path) is None and not Path(path).is_dir():
            raise UserError(f"'{path}' is not a model file with a .json spec next to it; give --model NAME too")
        loaded = load_model_files(path)
        shape = args.input_shape or loaded.input_shape
        base = create(loaded.arch["name"], **loaded.arch.get("kwargs", {})) if loaded.arch.get("name") else None
        label = f"{loaded.arch.get('name', '?')} from {loaded.source}"
        return loaded.model, label, shape, base  # type: ignore[return-value]
    if args.model is None:
        raise UserError("measure needs --model NAME, --run DIR or --weights FILE (a model file with its .json spec)")
    allowed = list_models()
    if args.model not in allowed:
        raise UserError(
            f"--model: got {args.model!r}; allowed: {', '.join(allowed)}{did_you_mean(args.model, allowed)}"
        )
    if args.width > MAX_WIDTH:
        raise UserError(f"--width: got {args.width:g}; at most {MAX_WIDTH:g} (wider models do not fit in memory)")
    shape = args.input_shape or (3, 32, 32)
    model = create(
        args.model,
        num_classes=args.num_classes,
        in_channels=shape[0],
        width=args.width,
        **model_kwargs(args.model, shape[1:]),
    )
    if args.weights is not None:
        load_weights(model, args.weights)
    return model, f"{args.model} (width {args.width:g})", shape, None


def _speed_ups(args: argparse.Namespace, base: nn.Module, model: nn.Module, x: torch.Tensor) -> list[SpeedUp]:
    """Interleaved base/pruned timing on each device: the asked one, or the CPU and CUDA when present."""
    devices = [resolve_device(args.device)] if args.device is not None else [torch.device("cpu")]
    if args.device is None and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    out = []
    for device in devices:
        cuda = device.type == "cuda"
        out.append(
            compare_latency(
                base,
                model,
                x,
                rounds=args.rounds,
                repeats=max(args.repeats // args.rounds, 3),
                warmup=args.warmup,
                device=device,
                threads=None if cuda else args.threads,
                dtype=getattr(torch, args.dtype) if cuda else None,
                channels_last=args.channels_last and cuda,
            )
        )
    return out


def run(args: argparse.Namespace) -> int:
    """Count, time, print."""
    device = resolve_device(args.device or "cpu")
    model, label, (channels, height, width), base = _model(args)
    model.eval()
    example = torch.zeros(1, channels, height, width)
    cost = count_cost(model, example)
    base_cost = count_cost(base, example) if base is not None else None
    if base_cost is not None and base_cost.macs == cost.macs:
        base, base_cost = None, None  # not pruned: nothing to compare
    latency = measure_latency(
        model,
        torch.randn(args.batch_size, channels, height, width),
        warmup=args.warmup,
        repeats=args.repeats,
        device=device,
        threads=args.threads,
    )
    record = {
        "model": label,
        "input_shape": [channels, height, width],
        "macs": int(cost.macs),
        "macs_counter": cost.counter,
        "params": int(cost.params),
        "batch_size": args.batch_size,
        "device": str(device),
        "threads": latency.threads,
        "repeats": latency.repeats,
        "latency_median_ms": float(latency.median_ms),
        "latency_iqr_ms": float(latency.iqr_ms),
        "throughput_per_s": float(latency.throughput),
    }
    rows = []
    if base is not None and base_cost is not None:
        batch = torch.randn(args.batch_size, channels, height, width)
        speed_ups = _speed_ups(args, base.eval(), model, batch)
        record["base_macs"] = int(base_cost.macs)
        record["macs_ratio"] = base_cost.macs / cost.macs
        record["speed_up"] = [_speed_up_record(s, args) for s in speed_ups]
        rows.append(("MACs ratio (base / pruned)", f"{record['macs_ratio']:.2f}x"))
        for s in speed_ups:
            where = f"{s.device}, {s.threads} threads" if s.device == "cpu" else f"{s.device}, {args.dtype}"
            rows.append(
                (
                    f"latency speed-up, median [IQR] of {s.rounds} rounds (batch {args.batch_size}, {where})",
                    f"{s.median:.2f}x [{s.q1:.2f}-{s.q3:.2f}]; {s.base_median_ms:.3f} -> {s.pruned_median_ms:.3f} ms",
                )
            )
    console = make_console()
    if latency.too_noisy:
        make_console(stderr=True).print(
            f"warning: latency spread is wide (IQR {latency.iqr_ms:.3f} ms = "
            f"{100 * latency.iqr_ms / latency.median_ms:.0f}% of the median): the machine is busy; do not compare "
            "models by this figure, re-measure on an idle machine or with more --repeats"
        )
    if args.json:
        print(json.dumps(record))
        return 0
    console.print(
        metric_table(
            f"{label}, input {channels}x{height}x{width}",
            [
                ("MACs / image", format_count(record["macs"])),
                ("params", format_count(record["params"])),
                (
                    f"latency median ± IQR (batch {args.batch_size}, {device}, {latency.threads} threads, "
                    f"{latency.repeats} runs)",
                    f"{latency.median_ms:.3f} ± {latency.iqr_ms:.3f} ms",
                ),
                ("throughput", f"{latency.throughput:,.1f} images/s"),
                *rows,
            ],
        )
    )
    return 0


def _speed_up_record(s: SpeedUp, args: argparse.Namespace) -> dict:
    cuda = s.device.startswith("cuda")
    return {
        "device": s.device,
        "threads": None if cuda else s.threads,
        "dtype": args.dtype if cuda else "float32",
        "channels_last": bool(args.channels_last and cuda),
        "batch_size": args.batch_size,
        "rounds": s.rounds,
        "median": s.median,
        "q1": s.q1,
        "q3": s.q3,
        "base_ms": s.base_median_ms,
        "pruned_ms": s.pruned_median_ms,
    }


COMMAND = Command(
    name="measure",
    help="count MACs and parameters of a model and time its forward pass (median and IQR); for a pruned model "
    "also the latency speed-up over its unpruned architecture next to the MACs ratio",
    add_arguments=add_arguments,
    run=run,
)
