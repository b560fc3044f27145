"""measure_latency: sane values, eval mode during timing, restored state, argument checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from decayprune.measure import LatencyResult, measure_latency


@pytest.mark.parametrize("training", [True, False])
def test_values_and_restored_mode(training: bool) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    model.train(training)
    running_mean = model[1].running_mean.clone()
    result = measure_latency(model, torch.randn(5, 3, 8, 8) + 2.0, warmup=1, repeats=3)
    assert isinstance(result, LatencyResult)
    for value in (result.median_ms, result.mean_ms, result.min_ms):
        assert value > 0 and math.isfinite(value)
    assert result.std_ms >= 0 and math.isfinite(result.std_ms)
    assert result.min_ms <= result.median_ms
    assert (result.repeats, result.batch_size, result.device) == (3, 5, "cpu")
    assert result.throughput == pytest.approx(5 / (result.median_ms / 1000))
    assert model.training is training
    assert torch.equal(model[1].running_mean, running_mean)  # ran in eval mode


def test_runs_in_eval_mode_without_grad() -> None:
    seen: list[tuple[bool, bool]] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((self.training, torch.is_grad_enabled()))
            return x

    model = Probe().train()
    measure_latency(model, torch.zeros(1, 2), warmup=2, repeats=3)
    assert seen == [(False, False)] * 5
    assert model.training


def test_explicit_device_and_tuple_inputs() -> None:
    class Add(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.lin(x) + y

    result = measure_latency(Add(), (torch.zeros(7, 3), torch.ones(7, 3)), warmup=0, repeats=1, device="cpu")
    assert result.batch_size == 7 and result.std_ms == 0.0 and result.device == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_cuda_on_copy_leaves_model_on_cpu() -> None:
    model = nn.Linear(16, 4)
    result = measure_latency(model, torch.zeros(8, 16), warmup=1, repeats=3, device="cuda")
    assert result.device.startswith("cuda") and result.median_ms > 0
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"warmup": -1}, "warmup"), ({"repeats": 0}, "repeats"), ({"repeats": 2.0}, "repeats")],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        measure_latency(nn.Identity(), torch.zeros(1, 2), **kwargs)


def test_inputs_without_tensor_rejected() -> None:
    with pytest.raises(ValueError, match="tensor"):
        measure_latency(nn.Identity(), (1, 2))


def test_latency_reports_iqr_and_pins_threads() -> None:
    import torch
    import torch.nn as nn

    from decayprune.measure import measure_latency

    before = torch.get_num_threads()
    result = measure_latency(nn.Linear(8, 2), torch.zeros(1, 8), warmup=0, repeats=9, threads=1)
    assert result.threads == 1 and torch.get_num_threads() == before  # restored
    assert 0.0 <= result.iqr_ms and result.min_ms <= result.median_ms
    assert measure_latency(nn.Linear(8, 2), torch.zeros(1, 8), warmup=0, repeats=1).iqr_ms == 0.0


def test_too_noisy_flags_a_wide_spread() -> None:
    from decayprune.measure.latency import NOISY_SPREAD, LatencyResult

    calm = LatencyResult(1.0, 1.0, 0.0, 1.0, 10, 1, "cpu", iqr_ms=0.1, threads=1)
    busy = LatencyResult(1.0, 1.0, 0.0, 1.0, 10, 1, "cpu", iqr_ms=NOISY_SPREAD + 0.01, threads=1)
    assert not calm.too_noisy and busy.too_noisy


def test_threads_must_be_positive() -> None:
    import pytest
    import torch
    import torch.nn as nn

    from decayprune.measure import measure_latency

    with pytest.raises(ValueError, match="threads must be an int >= 1"):
        measure_latency(nn.Linear(2, 2), torch.zeros(1, 2), threads=0)
