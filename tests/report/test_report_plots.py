"""The plots are valid PNG files that matplotlib reads back."""

from __future__ import annotations

import io
import json

import matplotlib.image as mpimg
import pytest

from decayprune.report import PNG_MAGIC, accuracy_vs_macs, aggregate, channels_kept, load_results, training_curves


def _check_png(data: bytes | None) -> None:
    assert data is not None and data[:8] == PNG_MAGIC
    pixels = mpimg.imread(io.BytesIO(data), format="png")
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 0  # not a blank image


def test_accuracy_vs_macs_png(small_bench):
    _check_png(accuracy_vs_macs(aggregate(load_results(small_bench.bench_dir))))


@pytest.mark.parametrize("cell", ["small_cnn-synthetic-l1-oneshot-s0", "small_cnn-synthetic-l1-sp-sr-s1"])
def test_run_plots(small_bench, cell):
    run_dir = small_bench.bench_dir / cell
    _check_png(training_curves(run_dir))
    _check_png(channels_kept(run_dir))  # leader has base.safetensors, follower reads its config's model.weights


def test_channels_kept_reads_widths_from_pruned_json_and_base(small_bench, monkeypatch):
    from matplotlib.axes import Axes

    run_dir = small_bench.bench_dir / "small_cnn-synthetic-l1-oneshot-s0"
    pruned = json.loads((run_dir / "pruned.json").read_text())["modules"]
    seen = {}
    real_bar = Axes.bar

    def spy(self, xs, heights, **kwargs):
        seen[kwargs.get("label")] = list(heights)
        return real_bar(self, xs, heights, **kwargs)

    monkeypatch.setattr(Axes, "bar", spy)
    channels_kept(run_dir)
    kept = [m.get("out_channels", m.get("out_features")) for m in pruned.values()]
    assert seen["kept"] == [k for k in kept if k is not None]
    assert all(b >= k for b, k in zip(seen["base"], seen["kept"], strict=True))
    assert sum(seen["kept"]) < sum(seen["base"])


def test_drawing_leaves_pyplot_alone(small_bench):
    import matplotlib
    import matplotlib.pyplot as plt

    backend, figures = matplotlib.get_backend(), plt.get_fignums()
    training_curves(small_bench.bench_dir / "small_cnn-synthetic-l1-oneshot-s0")
    assert matplotlib.get_backend() == backend and plt.get_fignums() == figures


def test_plots_need_their_inputs(tmp_path):
    assert training_curves(tmp_path) is None
    assert channels_kept(tmp_path) is None
