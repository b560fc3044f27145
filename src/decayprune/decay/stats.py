"""Self-rectifying statistics: per-step percentiles of C_rate and C_len over the decaying structures.

The engine keeps each step's values on the device and turns them into records here at its
read-back points (no host sync in a training step). The Pruner appends the records to
``sr_stats.jsonl`` next to ``dpm_events.jsonl``; :func:`~decayprune.decay.plot.plot_sr_stats`
draws them with the thresholds, so a user can see why SR did or did not fire.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config.prune import DecaySettings
from ..errors import UserError

Sink = Callable[[dict], None]

__all__ = ["PERCENTILES", "SR_STATS_FILE", "StatsBuffer", "find_sr_stats", "load_sr_stats", "summarize_sr_rows"]

PERCENTILES = (5, 25, 50, 75, 95)
"""The percentiles of each statistic a record holds (plus its max and the count ``n``)."""

SR_STATS_FILE = "sr_stats.jsonl"


def summarize_sr_rows(steps: list[int], rows: torch.Tensor, settings: DecaySettings) -> list[dict[str, Any]]:
    """One record per step from ``rows`` (``[steps, 2, S]``: C_rate, C_len; NaN where not decaying).

    Steps with no decaying structure give no record. Values are the ones compared with the
    thresholds (radial: the running means over the window; paper: the step's values).

    Example:
        >>> rows = torch.tensor([[[0.1, float("nan"), 0.3], [1.0, float("nan"), 3.0]]])
        >>> r = summarize_sr_rows([7], rows, DecaySettings(policy="sp+sr"))[0]
        >>> r["step"], r["n"], round(r["c_rate_p50"], 3), r["c_len_max"], r["t_len"]
        (7, 2, 0.2, 3.0, 1.5)
    """
    q = torch.tensor([p / 100 for p in PERCENTILES], dtype=torch.float64)
    out = []
    for step, row in zip(steps, rows.double(), strict=True):
        valid = ~torch.isnan(row[0])
        n = int(valid.sum())
        if n == 0:
            continue
        record: dict[str, Any] = {
            "step": int(step),
            "n": n,
            "criterion": settings.sr_criterion,
            "t_rate": settings.t_rate,
            "t_len": settings.t_len,
            "window": settings.window,
        }
        for name, values in (("c_rate", row[0][valid]), ("c_len", row[1][valid])):
            for p, v in zip(PERCENTILES, torch.quantile(values, q).tolist(), strict=True):
                record[f"{name}_p{p:02d}"] = v
            record[f"{name}_max"] = float(values.max())
        out.append(record)
    return out


def find_sr_stats(run_dir: str | os.PathLike) -> Path:
    """The ``sr_stats.jsonl`` of a run: in ``run_dir`` itself or its ``prune/`` folder."""
    root = Path(run_dir)
    for candidate in (root / SR_STATS_FILE, root / "prune" / SR_STATS_FILE):
        if candidate.is_file():
            return candidate
    raise UserError(
        f"no {SR_STATS_FILE} in {root} or {root / 'prune'}: self-rectifying statistics are written by runs with "
        "decay.policy 'sp+sr' that had decaying structures"
    )


def load_sr_stats(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run's ``sr_stats.jsonl`` (see :func:`find_sr_stats`), in file order."""
    path = find_sr_stats(run_dir)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class StatsBuffer:
    """Each step's C_rate and C_len of the counted units, kept on the device until the next read-back.

    :meth:`record` writes one row per step into a ``[rows, 2, S]`` device buffer (NaN where a
    unit was not counted); :meth:`flush` copies the rows to the host once and hands
    :func:`summarize_sr_rows` records to ``sink``. Without a sink nothing is kept.
    """

    def __init__(self, settings: DecaySettings, sink: Sink | None) -> None:
        self.settings = settings
        self.sink = sink
        self._buf: torch.Tensor | None = None
        self._steps: list[int] = []

    def flush(self) -> None:
        """Percentiles of C_rate and C_len over the decaying units, one record per step since the last flush."""
        if not self._steps or self._buf is None:
            return
        rows = self._buf[: len(self._steps)].cpu()
        steps, self._steps = self._steps, []
        if self.sink is None:
            return
        for record in summarize_sr_rows(steps, rows, self.settings):
            self.sink(record)

    def record(self, step: int, counted: torch.Tensor, c_rate: torch.Tensor, c_len: torch.Tensor, rows: int) -> None:
        """Keep this step's values of the ``counted`` units (a buffer of ``rows`` steps, on their device)."""
        if self.sink is None:
            return
        n, device = c_rate.numel(), c_rate.device
        if self._buf is None or self._buf.shape[0] < rows or self._buf.device != device:
            self.flush()
            self._buf = torch.full((rows, 2, n), float("nan"), device=device)
        if len(self._steps) >= self._buf.shape[0]:
            self.flush()
        nan = torch.full_like(c_rate, float("nan"))
        slot = self._buf[len(self._steps)]
        slot[0].copy_(torch.where(counted, c_rate, nan))
        slot[1].copy_(torch.where(counted, c_len, nan))
        self._steps.append(step)
