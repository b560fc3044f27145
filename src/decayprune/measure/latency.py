"""Wall-clock inference latency of a model: median and interquartile range of timed forward passes.

How to measure well: time on an otherwise idle machine, pin the thread count (``threads=``; the
result records it), use enough repeats (>= 50 for millisecond-scale models) and compare two models
only when their IQRs are small against the difference of their medians
(:attr:`LatencyResult.too_noisy` flags a spread above :data:`NOISY_SPREAD` of the median).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn as nn

__all__ = ["NOISY_SPREAD", "LatencyResult", "measure_latency"]

#: IQR / median above which a latency is too noisy to compare models by.
NOISY_SPREAD = 0.25


@dataclass(frozen=True)
class LatencyResult:
    """Timing of ``repeats`` forward passes of one batch.

    Attributes:
        median_ms: Median time per forward pass, milliseconds.
        mean_ms: Mean time per forward pass, milliseconds.
        std_ms: Sample standard deviation (0 when ``repeats == 1``), milliseconds.
        min_ms: Fastest pass, milliseconds.
        repeats: Number of timed passes.
        batch_size: Samples per pass (first dimension of the first input tensor).
        device: Device the passes ran on, e.g. ``"cpu"`` or ``"cuda:0"``.
        iqr_ms: Interquartile range (75th - 25th percentile) of the passes, milliseconds.
        threads: ``torch.get_num_threads()`` while timing.
    """

    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    repeats: int
    batch_size: int
    device: str
    iqr_ms: float = 0.0
    threads: int = 0

    @property
    def too_noisy(self) -> bool:
        """True when the spread (IQR / median) exceeds :data:`NOISY_SPREAD`: do not compare by it."""
        return self.median_ms > 0 and self.iqr_ms / self.median_ms > NOISY_SPREAD

    @property
    def throughput(self) -> float:
        """Samples per second at the median latency (``inf`` if the median is 0)."""
        return self.batch_size / (self.median_ms / 1000.0) if self.median_ms > 0 else math.inf


def measure_latency(
    model: nn.Module,
    example_inputs: torch.Tensor | tuple | list,
    *,
    warmup: int = 5,
    repeats: int = 20,
    device: str | torch.device | None = None,
    threads: int | None = None,
) -> LatencyResult:
    """Time forward passes of ``model`` in eval mode under ``torch.inference_mode``.

    Runs ``warmup`` untimed passes, then ``repeats`` timed ones; on CUDA (and MPS) the device
    is synchronized before and after every timed pass so the time covers the whole kernel
    queue. The model's training flag is restored afterwards. With ``device=None`` the model's
    own device is used (CPU for a model without parameters or buffers); with another device the
    passes run on a copy moved there, so the caller's model is never moved.

    Args:
        model: The model to time.
        example_inputs: A tensor (``model(x)``) or tuple/list of tensors (``model(*x)``); it is
            moved to the timing device. Its first dimension is taken as the batch size.
        warmup: Untimed passes first (>= 0).
        repeats: Timed passes (>= 1).
        device: Where to run, or ``None`` for the model's device.
        threads: Pin ``torch.set_num_threads`` to this for the measurement (restored after);
            ``None`` keeps the current setting. Either way the count is recorded.

    Returns:
        A :class:`LatencyResult`.

    Raises:
        ValueError: If ``warmup < 0``, ``repeats < 1`` or the inputs hold no tensor.
        TypeError: If ``model`` is not an ``nn.Module``.

    Example:
        >>> import torch, torch.nn as nn
        >>> result = measure_latency(nn.Linear(8, 2), torch.zeros(4, 8), warmup=1, repeats=3)
        >>> result.repeats, result.batch_size, result.median_ms > 0
        (3, 4, True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    if not tensors:
        raise ValueError("example_inputs must be a tensor or a tuple/list holding at least one tensor")
    batch_size = int(tensors[0].shape[0]) if tensors[0].dim() > 0 else 1

    own = _model_device(model)
    target = own if device is None else torch.device(device)
    runner = model if _same_device(own, target) else copy.deepcopy(model).to(target)
    inputs = tuple(t.to(target) if isinstance(t, torch.Tensor) else t for t in inputs)

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be an int >= 1 or None, got {threads!r}")
    was_training = runner.training
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    used_threads = torch.get_num_threads()
    runner.eval()
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                runner(*inputs)
            times_ms = []
            for _ in range(repeats):
                _synchronize(target)
                start = time.perf_counter()
                runner(*inputs)
                _synchronize(target)
                times_ms.append((time.perf_counter() - start) * 1000.0)
    finally:
        runner.train(was_training)
        torch.set_num_threads(old_threads)
    quartiles = statistics.quantiles(times_ms, n=4, method="inclusive") if len(times_ms) > 1 else [times_ms[0]] * 3
    return LatencyResult(
        median_ms=statistics.median(times_ms),
        mean_ms=statistics.fmean(times_ms),
        std_ms=statistics.stdev(times_ms) if len(times_ms) > 1 else 0.0,
        min_ms=min(times_ms),
        repeats=repeats,
        batch_size=batch_size,
        device=str(target),
        iqr_ms=quartiles[2] - quartiles[0],
        threads=used_threads,
    )


def _model_device(model: nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:<current>`` name the same device."""
    if a.type != b.type:
        return False
    if a.index is None or b.index is None:
        if a.type == "cuda":
            current = torch.cuda.current_device()
            return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
        return True
    return a.index == b.index


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
