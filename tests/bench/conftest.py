"""The tiny 2x2x2 bench, run once per test session."""

from __future__ import annotations

import pytest
from bench_testing import write_bench

from decayprune.bench import BenchSpec, load_bench


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory) -> BenchSpec:
    """The tiny bench, fully run (one process)."""
    from decayprune.bench import run_bench

    spec = load_bench(write_bench(tmp_path_factory.mktemp("bench")))
    summary = run_bench(spec)
    assert summary.names("failed") == [], summary.outcomes
    return spec
