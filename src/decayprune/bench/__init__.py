"""The benchmark runner: a bench file (matrix of prune runs), its runner, and its results table.

Application layer (it runs :mod:`decayprune.jobs`); ``decayprune bench FILE.yaml`` is its command.

Example:
    >>> from decayprune.bench import BenchSpec, expand
    >>> spec = BenchSpec.model_validate({"name": "doc", "matrix": {"seed": [0, 1]}})
    >>> len(expand(spec))
    6
"""

from __future__ import annotations

from .runner import BenchSummary, CellOutcome, PlannedCell, estimate_seconds, plan, run_bench
from .spec import BenchSpec, Cell, MatrixAxes, cell_config, expand, load_bench

__all__ = [
    "BenchSpec",
    "BenchSummary",
    "Cell",
    "CellOutcome",
    "MatrixAxes",
    "PlannedCell",
    "cell_config",
    "estimate_seconds",
    "expand",
    "load_bench",
    "plan",
    "run_bench",
]
