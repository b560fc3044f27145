"""The smooth-pruning decay schedule of DPM as a pure function."""

from __future__ import annotations

import torch


def decay_norm(l_init: torch.Tensor | float, total_steps: int, step: torch.Tensor | int) -> torch.Tensor:
    """Norm a decaying structure must have after ``step`` of ``total_steps`` decay steps.

    Smooth Pruning (DPM, Yang et al.) replaces one-shot zeroing by a linear fall of the
    structure's L2 norm: ``L(n) = L_init * (N - n) / N`` for ``n = 0..N``, exactly 0 at ``n = N``.
    Steps beyond ``N`` stay at 0.

    Args:
        l_init: Norm when the decay started (scalar or per-structure tensor).
        total_steps: ``N``, the number of optimizer steps the decay takes (>= 1).
        step: ``n``, steps completed (scalar or tensor broadcastable with ``l_init``).

    Example:
        >>> decay_norm(2.0, 4, 1).item(), decay_norm(2.0, 4, 4).item()
        (1.5, 0.0)
    """
    if total_steps < 1:
        raise ValueError(f"the decay needs at least one step, got total_steps={total_steps}")
    l_init = torch.as_tensor(l_init, dtype=torch.float32)
    n = torch.as_tensor(step, dtype=torch.float32).clamp(0, total_steps)
    return l_init * (total_steps - n) / total_steps
