"""Helpers that turn per-parameter values into one value per structure, shared by the criteria."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..structure import PRODUCER, ChannelGroup, StructureSet

__all__ = [
    "Normalize",
    "activation_sites",
    "group_activation_sites",
    "channel_dim",
    "is_weight_of",
    "layer_normalize",
    "module_of",
    "norm_layer_slices",
    "normalize_per_layer",
    "structure_dot",
    "sum_over_slices",
]

Normalize = Literal["none", "mean", "l2"]

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
        if keep is not None and not (sl.owner is not None and keep(sl.owner, sl.attribute)):
            continue
        tensor = sl.param.grad if source == "grad" else sl.param
        if tensor is None:
            continue
        rows = tensor.detach().movedim(sl.dim, 0).reshape(tensor.shape[sl.dim], -1)
        values = per_position(rows.float())[sl.positions.to(rows.device)]
        acc.index_add_(0, ids, values.double().cpu())
    return acc.float()


def module_of(model: nn.Module, param_name: str) -> nn.Module:
    """The module that owns the parameter called ``param_name`` (a slice knows it: ``ParamSlice.owner``)."""
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


def normalize_per_layer(scores: torch.Tensor, structures: StructureSet, how: str) -> torch.Tensor:
    """``"l2"``: divide by the layer group's L2 norm; ``"mean"``: by its mean; ``"none"``: unchanged.

    Example:
        >>> s = StructureSet(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)), torch.zeros(1, 2))
        >>> normalize_per_layer(torch.tensor([3.0, 4.0]), s, "l2").tolist()
        [0.6000000238418579, 0.800000011920929]
    """
    if how == "none":
        return scores
    if how == "mean":
        return layer_normalize(scores, structures.layer_of, len(structures.layers))
    sq = torch.zeros(len(structures.layers), dtype=scores.dtype).index_add_(0, structures.layer_of, scores**2)
    return scores / sq.sqrt()[structures.layer_of].clamp_min(1e-12)


def structure_dot(
    structures: StructureSet, other: Callable[[torch.Tensor], torch.Tensor | None], role: str | None = None
) -> torch.Tensor:
    """Per structure, the sum over its slices of ``param * other(param)`` (float64, CPU, shape ``[S]``).

    With ``other`` the gradient this is ``sum of g * w``, the first-order loss change of scaling the
    structure (every coupled slice at once) by ``1 + d``, per unit ``d``.

    Example:
        >>> net = nn.Sequential(nn.Linear(1, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1.0], [2.0]]))
        ...     _ = net[2].weight.copy_(torch.tensor([[3.0, 5.0]]))
        >>> structure_dot(StructureSet(net, torch.zeros(1, 1)), torch.ones_like).tolist()  # rows + columns
        [4.0, 7.0]
    """
    acc = torch.zeros(structures.num_structures, dtype=torch.float64)
    for _layer, sl, ids in structures.parameter_slices(role):
        tensor = other(sl.param)
        if tensor is None:
            continue
        prod = (sl.param.detach() * tensor.detach()).movedim(sl.dim, 0)
        rows = prod.reshape(prod.shape[0], -1).sum(1).double().cpu()
        acc.index_add_(0, ids, rows[sl.positions])
    return acc


def channel_dim(module: nn.Module) -> int:
    """The channel dim of ``module``'s output (last for linear and layer-norm layers, 1 otherwise)."""
    return -1 if isinstance(module, (nn.Linear, nn.LayerNorm)) else 1


def activation_sites(structures: StructureSet) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    """Per layer group, the modules whose output channels are the structures' activations.

    The norm layers among the producers when there are any (the channel as the next layer sees it,
    before the non-linearity), else the producing conv / linear layers.
    """
    return [site for group in structures.layers for site in group_activation_sites(group)]


def group_activation_sites(group: ChannelGroup) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    """``group.activation_sites()``, refused when the group has none (its units would all score zero).

    Raises:
        ValueError: The group's units have no module output that holds them (the heads of an
            ``nn.MultiheadAttention`` live inside its functional forward).
    """
    sites = group.activation_sites()
    if not sites:
        raise ValueError(
            f"this criterion reads activations, and the units of '{group.name}' have none (the heads of an "
            "nn.MultiheadAttention are computed inside its functional forward); use a weight or gradient "
            f"criterion (e.g. group_norm, l1_filter, taylor) or put '{group.name}' in ignored_layers"
        )
    return sites


def norm_layer_slices(structures: StructureSet) -> Iterator[tuple[_BatchNorm, torch.Tensor, torch.Tensor]]:
    """Yield ``(norm_module, positions, structure_ids)`` for each affine BN weight among the producer slices.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 1))
        >>> s = StructureSet(net, torch.zeros(1, 1, 2, 2))
        >>> [(type(m).__name__, ids.tolist()) for m, _p, ids in norm_layer_slices(s)]
        [('BatchNorm2d', [0, 1, 2])]
    """
    for group in structures.layers:
        yield from group.norm_sites()  # type: ignore[misc]


CONV_OR_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORM_TYPES = (_BatchNorm,)
__all__ += ["CONV_OR_LINEAR", "NORM_TYPES", "PRODUCER"]
