"""Write the report of a run folder or a bench folder: table, plots and one HTML page, in ``<folder>/report/``.

A bench folder (it holds ``bench.json`` or cell folders with ``result.json``) gets ``table.md``,
``table.csv``, ``accuracy_vs_macs.png`` and ``report.html`` (the table, the plot, and every cell's
curves and channels folded below); a run folder gets ``curves.png``, ``channels.png`` (when it has
``pruned.json`` and a base model) and ``report.html``.

Example:
    >>> build_report("runs/cpu-quick")  # doctest: +SKIP
    [PosixPath('runs/cpu-quick/report/table.md'), ...]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..files import write_bytes_atomic, write_text_atomic
from .html import Section, render_page
from .plots import accuracy_vs_macs, channels_kept, training_curves
from .table import aggregate, load_results, markdown_cells, to_csv, to_markdown

__all__ = ["REPORT_DIR", "build_report", "is_bench_dir", "is_run_dir"]

REPORT_DIR = "report"
_CELL_DPI = 60
_HEADER = ["model", "dataset", "method", "policy", "MACs %", "params %", "base top-1", "top-1", "Δ vs oneshot"]


def is_run_dir(path: Path) -> bool:
    """A run folder holds ``config.yaml`` (and, once finished, ``result.json``)."""
    return (path / "config.yaml").is_file()


def is_bench_dir(path: Path) -> bool:
    """A bench folder holds ``bench.json`` or run folders."""
    return (path / "bench.json").is_file() or any(is_run_dir(p) for p in path.iterdir() if p.is_dir())


def _result(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _run_section(run_dir: Path, *, folded: bool, dpi: int = 100) -> tuple[Section, dict[str, bytes]]:
    result = _result(run_dir)
    drawn = (("curves", training_curves(run_dir, dpi=dpi)), ("channels", channels_kept(run_dir, dpi=dpi)))
    pngs = {name: png for name, png in drawn if png}
    section = Section(run_dir.name, folded=folded)
    if result.get("kind") == "prune" and result.get("status") == "ok":
        base, final = result["base"], result["final"]
        section.tables.append(
            (
                ["", "top-1 (%)", "MACs", "params"],
                [
                    ["base", f"{base['top1']:.2f}", f"{base['macs']:,}", f"{base['params']:,}"],
                    [
                        "pruned",
                        f"{final['top1']:.2f} ({result['delta_top1']:+.2f})",
                        f"{final['macs']:,} ({result['macs_pct']:.1f}%)",
                        f"{final['params']:,} ({result['params_pct']:.1f}%)",
                    ],
                ],
            )
        )
        section.paragraphs.append(
            f"{result['method']} + {result['policy']} on {result['model']}/{result['dataset']}, seed {result['seed']}; "
            f"{result.get('releases', 0)} releases; {result.get('wall_time_s', 0.0):.1f} s"
        )
    elif result.get("status") == "failed":
        section.paragraphs.append(f"failed: {result.get('error', '')}")
    else:
        section.paragraphs.append("no result yet (the run has not finished)")
    section.images += [(f"{run_dir.name} {name}", png) for name, png in pngs.items()]
    return section, pngs


def _build_run(run_dir: Path) -> list[Path]:
    out = run_dir / REPORT_DIR
    section, pngs = _run_section(run_dir, folded=False)
    written = []
    for name, png in pngs.items():
        write_bytes_atomic(out / f"{name}.png", png)
        written.append(out / f"{name}.png")
    write_text_atomic(out / "report.html", render_page(f"run {run_dir.name}", [section]))
    return [*written, out / "report.html"]


def _build_bench(bench_dir: Path) -> list[Path]:
    out = bench_dir / REPORT_DIR
    rows = aggregate(load_results(bench_dir))
    write_text_atomic(out / "table.md", to_markdown(rows))
    write_text_atomic(out / "table.csv", to_csv(rows))
    written = [out / "table.md", out / "table.csv"]
    summary = Section(
        "results",
        paragraphs=[
            "mean ± std over seeds; MACs and params as % of the base model (compacted model); "
            "Δ vs oneshot: top-1 minus the same method's oneshot cell of the same seed."
        ],
        tables=[(_HEADER, [markdown_cells(r)[: len(_HEADER)] for r in rows])],
    )
    if rows:
        plot = accuracy_vs_macs(rows)
        write_bytes_atomic(out / "accuracy_vs_macs.png", plot)
        written.append(out / "accuracy_vs_macs.png")
        summary.images.append(("accuracy vs MACs", plot))
    cells = [p for p in sorted(bench_dir.iterdir()) if p.is_dir() and is_run_dir(p)]
    # per-cell plots at a lower resolution: a bench page holds two per cell
    sections = [summary] + [_run_section(cell, folded=True, dpi=_CELL_DPI)[0] for cell in cells]
    write_text_atomic(out / "report.html", render_page(f"bench {bench_dir.name}", sections))
    return [*written, out / "report.html"]


def build_report(path: str | Path) -> list[Path]:
    """(Re)build the report of a run folder or a bench folder; returns the files written.

    Raises:
        UserError: ``path`` is neither a run folder nor a bench folder.
    """
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"'{path}' is not a folder; give a run folder or a bench folder")
    if is_run_dir(path):
        return _build_run(path)
    if is_bench_dir(path):
        return _build_bench(path)
    raise UserError(f"'{path}' is neither a run folder (config.yaml) nor a bench folder (bench.json or run folders)")
