"""Per-layer sensitivity analysis (Li et al., ICLR 2017): prune one layer group alone, evaluate, repeat.

For each layer group and each ratio, the lowest-scored structures of that layer only (any
criterion; ``l1_filter`` as in the paper) are zeroed, the model is evaluated without fine-tuning,
and the weights are restored. The curves show which layers tolerate pruning;
:func:`caps_from_sensitivity` turns them into per-layer caps (``layer_caps``) for any ranking method.

Example:
    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> rows = sensitivity_curves(net, torch.zeros(1, 4), lambda m: 90.0, ratios=[0.5])
    >>> [(r["layer"], r["ratio"], r["pruned"], r["metric"]) for r in rows]
    [('0', 0.0, 0, 90.0), ('0', 0.5, 4, 90.0)]
    >>> caps_from_sensitivity(rows, max_drop=0.5)
    {'0': 0.5}
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .config import PruneSettings
from .errors import UserError
from .files import write_bytes_atomic, write_json_atomic, write_text_atomic
from .pruner import Pruner

__all__ = ["DEFAULT_RATIOS", "caps_from_sensitivity", "plot_sensitivity", "sensitivity_curves", "write_sensitivity"]

DEFAULT_RATIOS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
COLUMNS = ("layer", "ratio", "pruned", "structures", "metric")


def sensitivity_curves(
    model: nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    evaluate_fn: Callable[[nn.Module], float],
    *,
    criterion: str = "l1_filter",
    criterion_options: Mapping[str, Any] | None = None,
    ratios: Iterable[float] = DEFAULT_RATIOS,
    calibration_data: Iterable[Any] | None = None,
    ignored_layers: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Metric after pruning each layer group alone at each ratio; one row per (layer, ratio), plus ratio 0.

    Args:
        model: A trained model (left with its weights unchanged).
        example_inputs: Inputs for tracing (batch 1).
        evaluate_fn: Maps the model to the metric (e.g. ``lambda m: evaluate(m, loader)["top1"]``).
        criterion: Which structures go first within a layer (any registered criterion).
        criterion_options: Its options.
        ratios: Fractions of each layer's structures to prune, each in (0, 1); a layer always
            keeps one structure.
        calibration_data: Batches for data-pass criteria.
        ignored_layers: Module names never pruned.

    Returns:
        Rows ``{"layer", "ratio", "pruned", "structures", "metric"}``; ratio 0 is the unpruned metric.
    """
    ratios = sorted(float(r) for r in ratios)
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise UserError(f"sensitivity ratios must be in (0, 1), got {ratios}")
    settings = PruneSettings(
        method="iterative",
        criterion=criterion,
        criterion_options=dict(criterion_options or {}),
        target_macs_fraction=0.5,
        ignored_layers=list(ignored_layers),
        decay={"policy": "oneshot"},  # the Pruner only scores here: no decay schedule to fit
    )
    pruner = Pruner(model, example_inputs, settings, total_steps=100, calibration_data=calibration_data)
    s, criterion_obj = pruner.structures, pruner.method.criterion
    assert criterion_obj is not None  # the iterative method always ranks by a criterion
    scores = criterion_obj.score(pruner.context.scoring).cpu()
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    baseline = float(evaluate_fn(model))
    rows = []
    try:
        for layer in s.layers:
            rows.append({"layer": layer.name, "ratio": 0.0, "pruned": 0, "structures": layer.size, "metric": baseline})
            order = layer.ids[torch.argsort(scores[layer.ids], stable=True)]
            for ratio in ratios:
                k = min(int(round(ratio * layer.size)), layer.size - 1)
                mask = torch.zeros(s.num_structures, dtype=torch.bool)
                mask[order[:k]] = True
                s.set_mask(mask)
                s.zero_pruned_(grads=False)
                metric = float(evaluate_fn(model))
                model.load_state_dict(saved)
                rows.append(
                    {"layer": layer.name, "ratio": ratio, "pruned": k, "structures": layer.size, "metric": metric}
                )
    finally:
        s.set_mask(torch.zeros(s.num_structures, dtype=torch.bool))
        model.load_state_dict(saved)
    return rows


def caps_from_sensitivity(rows: Iterable[Mapping[str, Any]], max_drop: float) -> dict[str, float]:
    """Per layer, the largest ratio up to which the metric stays within ``max_drop`` of the unpruned one.

    A ratio counts only when every smaller ratio passed too (the curve's first failure ends it);
    the result plugs into ``method_options.layer_caps`` of any ranking method.
    """
    if max_drop < 0:
        raise UserError(f"max_drop must be >= 0, got {max_drop}")
    by_layer: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        by_layer.setdefault(str(row["layer"]), []).append((float(row["ratio"]), float(row["metric"])))
    caps = {}
    for layer, points in by_layer.items():
        points.sort()
        base = next((m for r, m in points if r == 0.0), None)
        if base is None:
            raise UserError(f"sensitivity rows of layer {layer!r} have no ratio-0 (unpruned) row")
        cap = 0.0
        for ratio, metric in points:
            if metric < base - max_drop:
                break
            cap = ratio
        caps[layer] = cap
    return caps


def plot_sensitivity(rows: Iterable[Mapping[str, Any]], title: str = "sensitivity") -> bytes:
    """A PNG of metric vs pruned ratio, one line per layer."""
    from matplotlib.figure import Figure  # the object API: the caller's backend is left alone

    by_layer: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        by_layer.setdefault(str(row["layer"]), []).append((float(row["ratio"]), float(row["metric"])))
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for layer, points in by_layer.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=layer)
    ax.set_xlabel("fraction of the layer's structures pruned")
    ax.set_ylabel("metric (no fine-tuning)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def write_sensitivity(
    rows: list[dict[str, Any]],
    out_dir: str | os.PathLike[str],
    *,
    max_drop: float | None = None,
    title: str = "sensitivity",
) -> dict[str, Path]:
    """Write ``sensitivity.csv``, ``sensitivity.png`` and (with ``max_drop``) ``layer_caps.json``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row[k] for k in COLUMNS} for row in rows)
    paths = {"csv": out / "sensitivity.csv", "png": out / "sensitivity.png"}
    write_text_atomic(paths["csv"], text.getvalue())
    write_bytes_atomic(paths["png"], plot_sensitivity(rows, title))
    if max_drop is not None:
        paths["caps"] = out / "layer_caps.json"
        write_json_atomic(paths["caps"], caps_from_sensitivity(rows, max_drop))
    return paths
