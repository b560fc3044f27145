"""Small helpers for running under ``torch.distributed`` (DDP) or in a single process."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "all_reduce_sum",
    "barrier",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "is_main_process",
    "unwrap_model",
]


def is_distributed() -> bool:
    """True when a ``torch.distributed`` process group is initialized.

    Example:
        >>> is_distributed()
        False
    """
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Rank of this process (0 without a process group).

    Example:
        >>> get_rank()
        0
    """
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group).

    Example:
        >>> get_world_size()
        1
    """
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0: the process that writes files and shows progress.

    Example:
        >>> is_main_process()
        True
    """
    return get_rank() == 0


def barrier() -> None:
    """Wait for every process (no-op without a process group).

    Example:
        >>> barrier()
    """
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes in place and return it (identity without a group).

    With NCCL the tensor must live on this process's GPU.

    Example:
        >>> all_reduce_sum(torch.tensor([1.0, 2.0]))
        tensor([1., 2.])
    """
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the user's module inside DDP / DataParallel / ``torch.compile`` wrappers.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> unwrap_model(nn.DataParallel(net)) is net
        True
    """
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model
