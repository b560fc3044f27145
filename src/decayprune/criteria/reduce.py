"""Helpers that turn per-parameter values into one value per structure, shared by the criteria."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from ..structure import PRODUCER, StructureSet

__all__ = ["layer_normalize", "sum_over_slices", "is_weight_of", "module_of"]

PerPosition = Callable[[torch.Tensor], torch.Tensor]


def sum_over_slices(
    structures: StructureSet,
    per_position: PerPosition,
    *,
    role: str | None = None,
    source: str = "weight",
    keep: Callable[[nn.Module, str], bool] | None = None,
) -> torch.Tensor:
    """Sum a per-channel value over every slice of each structure; returns ``[S]`` on the CPU.

    Args:
        structures: The structures to score.
        per_position: Maps a tensor viewed as ``[positions, -1]`` to ``[positions]`` values.
        role: Only slices of this role (:data:`PRODUCER` or ``CONSUMER``); None: all.
        source: ``"weight"`` (the parameters) or ``"grad"`` (their gradients; missing ones skipped).
        keep: Optional filter ``keep(owner_module, param_name)`` on the slices.

    Example:
        >>> import torch.nn as nn
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1., 1.], [2., 0.], [0., 3.]]))
        >>> s = StructureSet(net, torch.randn(1, 2), ignore_classifier=False)
        >>> keep = lambda m, n: n == "weight" and isinstance(m, nn.Linear)
        >>> sum_over_slices(s, lambda t: t.abs().sum(1), role=PRODUCER, keep=keep).tolist()
        [2.0, 2.0, 3.0]
    """
    acc = torch.zeros(structures.num_structures, dtype=torch.float64)
    for _layer, sl, ids in structures.parameter_slices(role):
        if keep is not None and not keep(module_of(structures.model, sl.name), sl.name.rpartition(".")[2]):
            continue
        tensor = sl.param.grad if source == "grad" else sl.param
        if tensor is None:
            continue
        rows = tensor.detach().movedim(sl.dim, 0).reshape(tensor.shape[sl.dim], -1)
        values = per_position(rows.float())[sl.positions.to(rows.device)]
        acc.index_add_(0, ids, values.double().cpu())
    return acc.float()


def module_of(model: nn.Module, param_name: str) -> nn.Module:
    """The module that owns the parameter called ``param_name``."""
    owner = param_name.rpartition(".")[0]
    return model.get_submodule(owner) if owner else model


def is_weight_of(*types: type[nn.Module]) -> Callable[[nn.Module, str], bool]:
    """A ``keep`` filter for :func:`sum_over_slices`: the ``weight`` of modules of ``types``."""
    return lambda module, name: name == "weight" and isinstance(module, types)


def layer_normalize(scores: torch.Tensor, layer_of: torch.Tensor, num_layers: int) -> torch.Tensor:
    """Divide each score by the mean score of its layer group, so a global ranking compares layers.

    Example:
        >>> layer_normalize(torch.tensor([1., 3., 10.]), torch.tensor([0, 0, 1]), 2).tolist()
        [0.5, 1.5, 1.0]
    """
    total = torch.zeros(num_layers, dtype=scores.dtype).index_add_(0, layer_of, scores)
    count = torch.zeros(num_layers, dtype=scores.dtype).index_add_(0, layer_of, torch.ones_like(scores))
    mean = total / count.clamp_min(1)
    return scores / mean[layer_of].clamp_min(1e-12)


CONV_OR_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
__all__ += ["CONV_OR_LINEAR", "PRODUCER"]
