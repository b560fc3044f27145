"""Which mixed-precision modes a device can run (checked when a config names its device).

``"off"``, ``"bf16"`` (bfloat16 autocast, no loss scaling) or ``"fp16"`` (float16 autocast with a
loss scaler). :mod:`decayprune.train.amp` runs them; this leaf only answers "can it run here?".
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["AmpMode", "amp_problem"]

AmpMode = Literal["off", "bf16", "fp16"]


def amp_problem(mode: str, device: torch.device) -> str | None:
    """Why ``mode`` cannot run on ``device`` with this torch (None when it can).

    Example:
        >>> amp_problem("fp16", torch.device("cpu")) is None
        True
        >>> amp_problem("fp16", torch.device("meta"))
        "amp='fp16' is not available on device 'meta' with torch ...; use 'off'"
    """
    if mode == "off":
        return None
    kind = device.type
    version = torch.__version__.split("+")[0]
    available = getattr(torch.amp, "is_autocast_available", lambda k: k in ("cpu", "cuda"))
    if not available(kind) or (mode == "fp16" and kind not in ("cpu", "cuda")):
        return f"amp={mode!r} is not available on device {kind!r} with torch {version}; use 'off'"
    if mode == "fp16":
        try:
            torch.amp.GradScaler(kind)
        except (AttributeError, RuntimeError, TypeError, ValueError):
            return f"amp='fp16' needs a GradScaler for {kind!r}, which torch {version} lacks; use 'bf16' or 'off'"
    if mode == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        return "amp='bf16' needs a GPU with bfloat16 support (Ampere or newer); use 'fp16' or 'off'"
    return None
