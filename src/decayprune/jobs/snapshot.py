"""Accuracy, cost and latency of one model at one point of a job (base, final)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..measure import count_cost, measure_latency
from ..train import evaluate
from ..train.losses import Loss

__all__ = ["LATENCY_REPEATS", "LATENCY_THREADS", "snapshot"]

#: Timed batch-1 passes per latency figure of a job (median and IQR are reported).
LATENCY_REPEATS = 50
#: CPU threads while a job times a model: one, so that figures do not depend on the machine's load.
LATENCY_THREADS = 1


def snapshot(
    model: nn.Module,
    test_loader: Any,
    example: torch.Tensor,
    device: str | torch.device,
    *,
    time_latency: bool = True,
    loss: Loss | None = None,
) -> dict[str, Any]:
    """Test accuracy (and loss), MACs (and the counter that counted them), params and CPU latency
    (median and IQR, one thread) of ``model``.

    ``loss`` decides how accuracy counts (tokens for ``causal_lm``); default: cross-entropy per sample.

    Under ``torch.distributed`` every rank calls it (the accuracy is all-reduced); only the one with
    ``time_latency`` times the model (the others report NaN latencies).

    Example:
        >>> m = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> data = [(torch.randn(6, 1, 2, 2), torch.randint(0, 3, (6,)))]
        >>> sorted(snapshot(m, data, torch.zeros(1, 1, 2, 2), "cpu"))
        ['latency_iqr_ms', 'latency_ms', 'macs', 'macs_counter', 'params', 'test_loss', 'top1', 'top5']
    """
    metrics = evaluate(model, test_loader, device=device, loss_fn=loss)
    model_cpu = model.to("cpu")
    cost = count_cost(model_cpu, example)
    median = iqr = float("nan")
    if time_latency:
        latency = measure_latency(
            model_cpu, example, warmup=5, repeats=LATENCY_REPEATS, device="cpu", threads=LATENCY_THREADS
        )
        median, iqr = latency.median_ms, latency.iqr_ms
    model.to(device)
    return {
        "top1": float(metrics["top1"]),
        "top5": float(metrics["top5"]),
        "test_loss": float(metrics["loss"]),
        "macs": int(cost.macs),
        "macs_counter": cost.counter,
        "params": int(cost.params),
        "latency_ms": float(median),
        "latency_iqr_ms": float(iqr),
    }
