"""Where a latency budget is measured: the deployment device and how the model runs there.

Example:
    >>> LatencySettings().resolved_device(cuda_available=False), LatencySettings().batch_size
    ('cpu', 1)
    >>> LatencySettings(device="cuda", dtype="bfloat16", channels_last=True).resolved_device(cuda_available=True)
    'cuda'
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["DEFAULT_WIDTH_MULTIPLE", "LatencySettings", "default_width_multiple"]

#: Kept-width multiple chosen for ``width_multiple: auto`` per device type. CUDA: 8, because
#: tensor-core GEMM/conv kernels tile channels by 8 (fp16/bf16) and cuDNN pads other widths, so a
#: width just above a multiple of 8 costs the next multiple. CPU: 1, because on the 2-core AVX-512
#: machine here a 3x3 and a 1x1 convolution (batch 1, one thread, 56 to 73 channels) took time
#: growing smoothly with the width, with no step at multiples of 8 or 16 (``benchmarks/latency.py``
#: prints the sweep), so rounding would only give away budget.
DEFAULT_WIDTH_MULTIPLE = {"cuda": 8, "cpu": 1}

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def default_width_multiple(device: str) -> int:
    """The ``width_multiple: auto`` value for ``device`` (``cpu``, ``cuda``, ``cuda:N``).

    Example:
        >>> default_width_multiple("cuda:1"), default_width_multiple("cpu")
        (8, 1)
    """
    return DEFAULT_WIDTH_MULTIPLE.get(device.split(":")[0], 1)


class LatencySettings(BaseModel):
    """The target device of a latency budget (``prune.latency``) and of ``width_multiple: auto``."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(
        "auto", description="deployment device: cpu, cuda, cuda:N, or auto (cuda when one is present, else cpu)"
    )
    threads: int | None = Field(None, ge=1, description="CPU threads while timing (CPU only; default 1)")
    batch_size: int = Field(1, ge=1, description="inputs per forward pass the latency is measured at")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="parameter and input dtype while timing (float16: CUDA only)"
    )
    channels_last: bool = Field(False, description="time 4-d activations in channels_last memory format")
    grid: int = Field(6, ge=2, le=32, description="candidate widths timed per layer dimension (interpolated between)")
    repeats: int = Field(5, ge=3, description="timed repetitions per table entry (the median is kept)")
    tolerance: float = Field(
        0.1, gt=0, lt=1, description="relative error of the measured pruned latency against the target that is accepted"
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"got {value!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N'")
        return value

    @model_validator(mode="after")
    def _applies(self) -> "LatencySettings":
        if self.device.startswith("cuda") and self.threads is not None:
            raise ValueError(f"threads: got {self.threads}; CPU threads do not apply to device {self.device!r}")
        if self.device == "cpu" and self.dtype == "float16":
            raise ValueError("dtype: got 'float16'; on the CPU use 'float32' or 'bfloat16' (float16 is CUDA only)")
        return self

    def resolved_device(self, cuda_available: bool) -> str:
        """The device name with ``auto`` resolved (``cuda`` when ``cuda_available``)."""
        if self.device == "auto":
            return "cuda" if cuda_available else "cpu"
        return self.device
