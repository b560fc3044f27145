"""The small bench, run once per test session, for the report tests."""

from __future__ import annotations

import pytest
from report_testing import run_small_bench

from decayprune.bench import BenchSpec


@pytest.fixture(scope="session")
def small_bench(tmp_path_factory: pytest.TempPathFactory) -> BenchSpec:
    """A finished 4-cell bench."""
    return run_small_bench(tmp_path_factory.mktemp("report"))
