"""PNG plots (matplotlib): accuracy vs MACs of a bench, training curves and channels kept of a run.

Every function returns the PNG's bytes, or None when the run folder lacks what the plot needs. Figures
are drawn with matplotlib's object API (no pyplot, no change of the user's backend), and matplotlib
is imported only when a plot is drawn.

Example:
    >>> from decayprune.report.table import Stat, TableRow
    >>> s = Stat.of([50.0, 52.0])
    >>> row = TableRow("m", "d", "l1", "sp", [0, 1], s, s, s, s, Stat.of([]), s)
    >>> accuracy_vs_macs([row])[:8] == PNG_MAGIC
    True
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .table import TableRow

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["PNG_MAGIC", "accuracy_vs_macs", "channels_kept", "read_jsonl", "training_curves"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_COLORS = {"oneshot": "tab:gray", "sp": "tab:blue", "sp+sr": "tab:orange"}


def _subplots(ncols: int, figsize: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    """A figure (not registered with pyplot) with one row of ``ncols`` axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def _png(fig: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file, one per line (an unreadable line, e.g. half-written, is skipped)."""
    out: list[dict[str, Any]] = []
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def accuracy_vs_macs(rows: list[TableRow]) -> bytes:
    """Top-1 against MACs % of base, one point per table row: marker per method, colour per policy, std bars.

    sp+sr points are hollow and larger, so that they stay visible where they equal the sp point.
    """
    fig, (ax,) = _subplots(1, (7.5, 4.6))
    methods = list(dict.fromkeys(r.method for r in rows))
    for row in rows:
        ax.errorbar(
            row.macs_pct.mean,
            row.top1.mean,
            xerr=row.macs_pct.std,
            yerr=row.top1.std,
            marker=_MARKERS[methods.index(row.method) % len(_MARKERS)],
            color=_COLORS.get(row.policy, "tab:green"),
            markerfacecolor="none" if row.policy == "sp+sr" else None,  # hollow: visible over an equal sp point
            markeredgewidth=1.8,
            markersize=10 if row.policy == "sp+sr" else 7,
            elinewidth=1,
            alpha=0.9,
            capsize=3,
            linestyle="none",
            label=f"{row.method} + {row.policy}"
            + (f" ({row.model}/{row.dataset})" if len({(r.model, r.dataset) for r in rows}) > 1 else ""),
        )
    ax.set_xlabel("MACs kept (% of base model)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("accuracy vs MACs (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return _png(fig)


def training_curves(run_dir: str | Path, *, dpi: int = 100) -> bytes | None:
    """Loss, accuracy and remaining MACs / decaying structures over the pruning run's steps, releases marked.

    Reads ``prune/metrics.jsonl`` (or ``metrics.jsonl`` for a train run) and ``prune/dpm_events.jsonl``.
    """
    run_dir = Path(run_dir)
    folder = run_dir / "prune" if (run_dir / "prune" / "metrics.jsonl").is_file() else run_dir
    metrics = [m for m in read_jsonl(folder / "metrics.jsonl") if "step" in m]
    if not metrics:
        return None
    releases = [e["step"] for e in read_jsonl(folder / "dpm_events.jsonl") if e.get("kind") == "release"]
    steps = [m["step"] for m in metrics]
    panels: list[tuple[str, tuple[str, ...]]] = [
        ("loss", ("train_loss", "test_loss")),
        ("top-1 (%)", ("train_top1", "test_top1")),
    ]
    if any("macs_committed_fraction" in m for m in metrics):
        panels.append(("MACs committed (% of base)", ("macs_committed_fraction",)))
    if any("decaying_structures" in m for m in metrics):
        panels.append(("structures", ("decaying_structures", "pruned_structures")))
    fig, axes = _subplots(len(panels), (4.0 * len(panels), 3.2))
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            points = [(s, m[key]) for s, m in zip(steps, metrics, strict=True) if m.get(key) is not None]
            if key == "macs_committed_fraction":
                points = [(s, 100.0 * v) for s, v in points]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=key.replace("_", " "))
        for i, step in enumerate(sorted(set(releases))):
            ax.axvline(step, color="tab:red", alpha=0.35, linewidth=1, label="release" if i == 0 else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig, dpi)


def _base_widths(run_dir: Path) -> dict[str, int] | None:
    """Output width of every weight tensor of the base model (``base.safetensors`` or the config's weights)."""
    from safetensors import safe_open

    base = run_dir / "base.safetensors"
    if not base.is_file():
        import yaml

        try:
            config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            return None
        weights = (config.get("model") or {}).get("weights")
        if not weights or not Path(weights).is_file():
            return None
        base = Path(weights)
    with safe_open(str(base), framework="pt") as handle:
        return {k: int(handle.get_slice(k).get_shape()[0]) for k in handle.keys() if k.endswith(".weight")}


def channels_kept(run_dir: str | Path, *, dpi: int = 100) -> bytes | None:
    """Per conv/linear layer: output channels of the base model and of the compacted model (``pruned.json``)."""
    run_dir = Path(run_dir)
    try:
        pruned = json.loads((run_dir / "pruned.json").read_text())
    except (OSError, ValueError):
        return None
    base = _base_widths(run_dir)
    if not base:
        return None
    layers = []
    for name, attrs in (pruned.get("modules") or {}).items():
        width = attrs.get("out_channels", attrs.get("out_features"))
        if width is not None and f"{name}.weight" in base:
            layers.append((name, base[f"{name}.weight"], int(width)))
    if not layers:
        return None
    fig, (ax,) = _subplots(1, (max(5.0, 0.45 * len(layers) + 2), 3.6))
    xs = range(len(layers))
    ax.bar(xs, [b for _, b, _ in layers], color="lightgray", label="base")
    ax.bar(xs, [k for _, _, k in layers], color="tab:blue", label="kept")
    for x, (_, b, k) in zip(xs, layers, strict=True):
        ax.text(x, k, f"{100 * k / b:.0f}%", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(xs), [n for n, _, _ in layers], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("output channels")
    ax.set_title("channels kept per layer")
    ax.legend(fontsize=8)
    return _png(fig, dpi)
