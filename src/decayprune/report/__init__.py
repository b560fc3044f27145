"""Reports from result files: the paper-shaped table, PNG plots and a self-contained HTML page.

Reads run and bench folders only (``result.json``, ``metrics.jsonl``, ``dpm_events.jsonl``,
``pruned.json``, ``base.safetensors``); ``decayprune report DIR`` rebuilds a folder's report.

Example:
    >>> from decayprune.report import build_report
    >>> build_report("runs/cpu-quick")  # doctest: +SKIP
"""

from __future__ import annotations

from .build import REPORT_DIR, build_report, is_bench_dir, is_run_dir
from .html import Section, png_img, render_page
from .plots import PNG_MAGIC, accuracy_vs_macs, channels_kept, training_curves
from .table import CSV_COLUMNS, Stat, TableRow, aggregate, load_results, to_csv, to_markdown

__all__ = [
    "CSV_COLUMNS",
    "PNG_MAGIC",
    "REPORT_DIR",
    "Section",
    "Stat",
    "TableRow",
    "accuracy_vs_macs",
    "aggregate",
    "build_report",
    "channels_kept",
    "is_bench_dir",
    "is_run_dir",
    "load_results",
    "png_img",
    "render_page",
    "to_csv",
    "to_markdown",
    "training_curves",
]
