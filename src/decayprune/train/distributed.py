"""Small helpers for running under ``torch.distributed`` (DDP) or in a single process.

``torchrun`` (or ``python -m torch.distributed.run``) starts one process per device and describes the
group in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``);
:func:`distributed_session` joins it, :func:`process_device` picks this process's device and
:func:`wrap_ddp` wraps a model. Without a launcher every helper is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from decayprune.config.train import resolve_device
from decayprune.errors import UserError

__all__ = [
    "all_reduce_sum",
    "assert_same_on_all_ranks",
    "barrier",
    "broadcast_buffers",
    "distributed_session",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "is_main_process",
    "launched_rank",
    "launched_world_size",
    "on_main_process",
    "process_device",
    "unwrap_model",
    "wrap_ddp",
]

T = TypeVar("T")


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


def launched_world_size() -> int:
    """``WORLD_SIZE`` as a launcher (torchrun) set it: 1 when not launched by one.

    Example:
        >>> launched_world_size()
        1
    """
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """``RANK`` as a launcher set it (0 when not launched by one); known before the group is joined.

    Example:
        >>> launched_rank()
        0
    """
    return int(os.environ.get("RANK", "0"))


def process_device(name: str) -> torch.device:
    """The device this process runs on: ``cuda:LOCAL_RANK`` for a CUDA device under a launcher.

    Raises:
        ValueError: A launch of several processes names one GPU (``cuda:N``): every process would use it.

    Example:
        >>> process_device("cpu")
        device(type='cpu')
    """
    device = resolve_device(name)
    if device.type != "cuda" or launched_world_size() <= 1:
        return device
    if device.index is not None:
        raise ValueError(
            f"device {name!r} names one GPU, but {launched_world_size()} processes were launched; use 'cuda' or "
            "'auto' (each process takes the GPU of its LOCAL_RANK)"
        )
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def distributed_session(device: str = "auto") -> Iterator[None]:
    """Join the process group a launcher describes (``WORLD_SIZE`` > 1) and leave it at the end.

    The backend is NCCL when ``device`` resolves to CUDA (each process on the GPU of its
    ``LOCAL_RANK``) and gloo otherwise. A no-op without a launcher or when a group already exists.
    On a normal exit the ranks meet at a barrier before the group is destroyed.

    Example:
        >>> with distributed_session("cpu"):
        ...     get_world_size()
        1
    """
    if launched_world_size() <= 1 or is_distributed():
        yield
        return
    target = process_device(device)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    try:
        yield
    except BaseException:
        dist.destroy_process_group()  # no barrier: a peer may be stuck in a collective
        raise
    # Wait for every rank before leaving: a rank that tears its group down while a peer's last
    # collective is still in flight can abort that peer (gloo threads, "terminate called ...").
    dist.barrier()
    dist.destroy_process_group()


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` moved to ``device`` and wrapped in DistributedDataParallel (unchanged without a group).

    Example:
        >>> net = nn.Linear(2, 2)
        >>> wrap_ddp(net, torch.device("cpu")) is net
        True
    """
    if not is_distributed():
        return model
    model.to(device)
    if device.type != "cuda":
        return nn.parallel.DistributedDataParallel(model)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return nn.parallel.DistributedDataParallel(model, device_ids=[index])


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_buffers(module: nn.Module) -> None:
    """Give every rank rank 0's buffers (e.g. batch-norm running statistics); no-op without a group.

    DDP copies them at every forward; after the last training step each rank holds its own, so
    evaluation and compaction call this first.

    Example:
        >>> broadcast_buffers(nn.BatchNorm1d(3))
    """
    if not is_distributed():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def assert_same_on_all_ranks(values: torch.Tensor, what: str) -> None:
    """Raise ``RuntimeError`` unless every rank passed equal ``values`` (a no-op without a group).

    Example:
        >>> assert_same_on_all_ranks(torch.tensor([1.0, 2.0]), "state")
    """
    if not is_distributed() or get_world_size() == 1:
        return
    flat = values.detach().double().flatten().to(_comm_device())
    both = torch.cat([flat, -flat])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    highest, lowest = both[: flat.numel()], -both[flat.numel() :]
    if not torch.equal(highest, lowest):
        raise RuntimeError(
            f"the ranks disagree on {what} (rank {get_rank()} of {get_world_size()}): a decision was computed "
            "from per-rank statistics; every pruning decision must come from all-reduced ones"
        )


def on_main_process(fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only (e.g. to prepare a folder) while the others wait; returns its result there.

    When ``fn`` raises on rank 0 the error propagates there and the other ranks raise a ``UserError``
    (so no rank waits forever). Without a group: ``fn()``.

    Example:
        >>> on_main_process(lambda: 3)
        3
    """
    if not is_distributed():
        return fn()
    result: T | None = None
    failed = torch.zeros(1, device=_comm_device())
    error: BaseException | None = None
    if is_main_process():
        try:
            result = fn()
        except BaseException as exc:  # re-raised below, after the others have been told
            error = exc
            failed.fill_(1.0)
    dist.broadcast(failed, src=0)
    if error is not None:
        raise error
    if bool(failed.item()):
        raise UserError("rank 0 stopped with an error (it printed the reason)")
    return result
