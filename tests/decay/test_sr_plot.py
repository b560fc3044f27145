"""SR statistics from a tiny pruning run, and their plot."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from decayprune import plot_sr_stats
from decayprune.config import DecaySettings, PruneSettings
from decayprune.decay import load_sr_stats
from decayprune.errors import UserError
from decayprune.models import create
from decayprune.pruner import Pruner


def test_a_tiny_run_logs_sr_stats_and_plots_them(tmp_path) -> None:
    torch.manual_seed(0)
    model = create("small_cnn", num_classes=10, in_channels=1)
    decay = DecaySettings(policy="sp+sr", steps=6, t_rate=0.0, t_len=1.0, window=2)
    settings = PruneSettings(method="l1", target_macs_fraction=0.6, iterative_steps=1, decay=decay)
    pruner = Pruner(model, torch.zeros(1, 1, 8, 8), settings, total_steps=12, run_dir=tmp_path)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner.bind(opt)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    for _ in range(12):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        pruner.after_backward()
        opt.step()
        pruner.after_step()
    records = load_sr_stats(tmp_path)
    assert records == pruner.sr_stats and records[0]["step"] == 2  # selected at step 1, first decay step 2
    for r in records:
        assert r["n"] > 0 and -1.0 - 1e-6 <= r["c_rate_p05"] <= r["c_rate_p50"] <= r["c_rate_max"] <= 1.0 + 1e-6
        assert 0.0 <= r["c_len_p05"] <= r["c_len_p50"] <= r["c_len_p95"] <= r["c_len_max"]
        assert (r["t_rate"], r["t_len"], r["window"]) == (0.0, 1.0, 2)
    summary = pruner.summary()
    assert summary["sr_c_len_p95"] == max(r["c_len_p95"] for r in records)
    out = plot_sr_stats(tmp_path, tmp_path / "plots" / "sr.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_without_stats_gets_a_clear_error(tmp_path) -> None:
    with pytest.raises(UserError, match="no sr_stats.jsonl .* 'sp\\+sr'"):
        plot_sr_stats(tmp_path, tmp_path / "x.png")
