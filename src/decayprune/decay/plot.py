"""Plot a run's self-rectifying statistics: C_rate and C_len percentiles per step, thresholds drawn."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..files import write_bytes_atomic
from .stats import find_sr_stats, load_sr_stats

__all__ = ["plot_sr_stats"]


def _release_steps(stats_path: Path) -> list[int]:
    events = stats_path.parent / "dpm_events.jsonl"
    if not events.is_file():
        return []
    steps = []
    for line in events.read_text().splitlines():
        if line.strip():
            event = json.loads(line)
            if event.get("kind") == "release":
                steps.append(int(event["step"]))
    return steps


def plot_sr_stats(run_dir: str | os.PathLike, out_png: str | os.PathLike) -> Path:
    """Draw ``sr_stats.jsonl`` of ``run_dir`` (or ``run_dir/prune``) to ``out_png``; returns its path.

    Two panels (C_rate, C_len) against the optimizer step: the median, the 25-75 and 5-95
    percentile bands and the max over the decaying structures, the threshold as a dashed line
    and each release (from ``dpm_events.jsonl``) as a tick. A release needs both statistics of
    one structure above their thresholds, so max above the line in both panels is necessary, not
    sufficient.

    Example:
        >>> import tempfile, json, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> rec = {"step": 1, "n": 2, "t_rate": 0.0, "t_len": 2.0, "criterion": "radial", "window": 8}
        >>> keys = ("p05", "p25", "p50", "p75", "p95", "max")
        >>> rec.update({f"{k}_{p}": 0.1 for k in ("c_rate", "c_len") for p in keys})
        >>> _ = (d / "sr_stats.jsonl").write_text(json.dumps(rec) + "\\n")
        >>> plot_sr_stats(d, d / "sr.png").stat().st_size > 0
        True
    """
    import io

    from matplotlib.figure import Figure  # the object API: the caller's backend is left alone

    path = find_sr_stats(run_dir)
    records = load_sr_stats(run_dir)
    releases = _release_steps(path)
    fig = Figure(figsize=(8, 6))
    axes = fig.subplots(2, 1, sharex=True)
    steps = [r["step"] for r in records]
    last = records[-1] if records else {}
    labels = {"c_rate": f"C_rate ({last.get('criterion', '?')}, W={last.get('window', '?')})", "c_len": "C_len"}
    for ax, name, threshold in zip(axes, ("c_rate", "c_len"), ("t_rate", "t_len"), strict=True):

        def col(key: str, name: str = name) -> list[float]:
            return [r[f"{name}_{key}"] for r in records]

        if records:
            ax.fill_between(steps, col("p05"), col("p95"), alpha=0.2, color="C0", label="p5-p95", step="mid")
            ax.fill_between(steps, col("p25"), col("p75"), alpha=0.4, color="C0", label="p25-p75", step="mid")
            ax.plot(steps, col("p50"), color="C0", label="median")
            ax.plot(steps, col("max"), color="C1", linestyle=":", label="max")
            ax.axhline(last[threshold], color="C3", linestyle="--", label=f"{threshold.upper()} = {last[threshold]:g}")
        for step in releases:
            ax.axvline(step, color="C2", alpha=0.5, linewidth=0.8)
        ax.set_ylabel(labels[name])
        ax.legend(loc="best", fontsize=7)
    axes[-1].set_xlabel(f"optimizer step ({len(releases)} releases, green)")
    axes[0].set_title(f"self-rectifying statistics over decaying structures: {path.parent}")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    out = Path(out_png)
    write_bytes_atomic(out, buffer.getvalue())
    return out
