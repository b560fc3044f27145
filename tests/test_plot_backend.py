"""Library plots use matplotlib's object API: the caller's backend is never switched."""

from __future__ import annotations

import matplotlib
import pytest

from decayprune.report import PNG_MAGIC
from decayprune.sensitivity import plot_sensitivity


@pytest.fixture
def pdf_backend():
    before = matplotlib.get_backend()
    matplotlib.use("pdf")
    yield
    matplotlib.use(before)


def test_plot_sensitivity_keeps_the_backend(pdf_backend) -> None:
    png = plot_sensitivity(
        [{"layer": "conv1", "ratio": 0.5, "metric": 0.9}, {"layer": "conv1", "ratio": 0.0, "metric": 1}]
    )
    assert png.startswith(PNG_MAGIC)
    assert matplotlib.get_backend() == "pdf"


def test_plot_sr_stats_keeps_the_backend(pdf_backend, tmp_path) -> None:
    from decayprune import plot_sr_stats

    (tmp_path / "sr_stats.jsonl").write_text("")
    (tmp_path / "dpm_events.jsonl").write_text("")
    out = plot_sr_stats(tmp_path, tmp_path / "sr.png")
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert matplotlib.get_backend() == "pdf"
