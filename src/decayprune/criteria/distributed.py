"""Reduce criterion statistics across DDP ranks, so every rank takes the same pruning decision."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_reduce_mean"]


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over all ranks (``values`` itself without a process group).

    Example:
        >>> all_reduce_mean(torch.tensor([1.0, 2.0])).tolist()
        [1.0, 2.0]
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()
