"""Latency speed-up of a pruned model over its base, timed in interleaved rounds, with its spread.

On a shared machine the load drifts while two models are timed one after the other, which biases
their ratio. :func:`compare_latency` alternates the two models for ``rounds`` rounds of
``repeats`` passes each, takes the ratio of the medians in every round, and reports the median of
those ratios with their interquartile range (the spread), beside each model's pooled timing.
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass

import torch
import torch.nn as nn

from .latency import LatencyResult, measure_latency

__all__ = ["SpeedUp", "compare_latency"]


@dataclass(frozen=True)
class SpeedUp:
    """Base latency / pruned latency over interleaved rounds.

    Attributes:
        median: Median over rounds of (base median / pruned median).
        q1: 25th percentile of the per-round ratios.
        q3: 75th percentile of the per-round ratios.
        rounds: Rounds timed.
        base_ms: The base model's median per round, ms.
        pruned_ms: The pruned model's median per round, ms.
        device: Where the passes ran.
        threads: CPU threads while timing.
    """

    median: float
    q1: float
    q3: float
    rounds: int
    base_ms: tuple[float, ...]
    pruned_ms: tuple[float, ...]
    device: str
    threads: int

    @property
    def base_median_ms(self) -> float:
        """Median over rounds of the base model's per-round medians."""
        return statistics.median(self.base_ms)

    @property
    def pruned_median_ms(self) -> float:
        """Median over rounds of the pruned model's per-round medians."""
        return statistics.median(self.pruned_ms)

    @property
    def iqr(self) -> float:
        """Interquartile range of the per-round ratios."""
        return self.q3 - self.q1


def compare_latency(
    base: nn.Module,
    pruned: nn.Module,
    example_inputs: torch.Tensor,
    *,
    rounds: int = 5,
    repeats: int = 20,
    warmup: int = 3,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> SpeedUp:
    """Time ``base`` and ``pruned`` alternately and return the speed-up with its spread.

    Both models run on copies moved to ``device`` (in ``dtype`` and ``channels_last`` when asked;
    on CUDA every pass is synchronised, see :func:`~decayprune.measure.measure_latency`).

    Example:
        >>> import torch.nn as nn
        >>> wide, narrow = nn.Linear(256, 256), nn.Linear(256, 16)
        >>> s = compare_latency(wide, narrow, torch.zeros(8, 256), rounds=3, repeats=5)
        >>> s.rounds, len(s.base_ms), s.q1 <= s.median <= s.q3
        (3, 3, True)
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    target = torch.device(device)
    runners = [_prepared(m, target, dtype, channels_last) for m in (base, pruned)]
    x = example_inputs.to(target)
    if dtype is not None and x.is_floating_point():
        x = x.to(dtype)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    results: list[list[LatencyResult]] = [[], []]
    for _ in range(rounds):
        for i, runner in enumerate(runners):
            results[i].append(measure_latency(runner, x, warmup=warmup, repeats=repeats, threads=threads))
    base_ms = tuple(r.median_ms for r in results[0])
    pruned_ms = tuple(r.median_ms for r in results[1])
    ratios = [b / p for b, p in zip(base_ms, pruned_ms, strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if rounds > 1 else (ratios[0],) * 3
    return SpeedUp(
        median=statistics.median(ratios),
        q1=q1,
        q3=q3,
        rounds=rounds,
        base_ms=base_ms,
        pruned_ms=pruned_ms,
        device=str(target),
        threads=results[0][0].threads,
    )


def _prepared(model: nn.Module, device: torch.device, dtype: torch.dtype | None, channels_last: bool) -> nn.Module:
    runner = copy.deepcopy(model).to(device)
    if dtype is not None:
        runner = runner.to(dtype)
    if channels_last:
        runner = runner.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return runner.eval()
