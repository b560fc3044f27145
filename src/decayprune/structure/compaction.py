"""Physical removal of pruned structures, with optimizer-state remapping.

torch-pruning slices the modules; it replaces every touched ``nn.Parameter`` by a new,
smaller one. The optimizer would then hold stale parameters, so each touched parameter's
state (momentum, Adam moments) is sliced with the same kept indices and moved to the new
parameter object, group by group, so training continues as if nothing had happened.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn

from .graph import DependencyGraph, Group, graph_of, is_out_channel_handler
from .groups import ChannelGroup
from .heads import HeadGroup
from .mha import MhaHeadGroup, compact_mha
from .slices import CONV_TYPES, group_slices
from .units import StructureSet


@dataclass(frozen=True)
class CompactionReport:
    """What :func:`compact` removed.

    Attributes:
        removed_structures: Number of structures physically removed.
        params_before / params_after: Parameter counts before and after.
    """

    removed_structures: int
    params_before: int
    params_after: int


def _names_by_param(model: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def _param_by_name(model: nn.Module, name: str) -> nn.Parameter:
    return model.get_parameter(name)


@torch.no_grad()
def compact(structures: StructureSet, optimizer: torch.optim.Optimizer | None = None) -> CompactionReport:
    """Remove every pruned structure of ``structures.model`` in place.

    The pruned structures must already be zero (see :meth:`StructureSet.zero_pruned_`), so
    the smaller model computes the same function as the masked one. After this call the
    ``StructureSet`` is stale: build a new one on the compacted model to prune further.

    Args:
        structures: The structure set whose ``pruned`` mask says what to remove.
        optimizer: If given, its param groups and state are remapped to the new parameters.

    Returns:
        A :class:`CompactionReport`.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
        >>> s = StructureSet(net, torch.randn(1, 3, 8, 8), ignore_classifier=False)
        >>> first = next(layer.first for layer in s.layers if layer.name == "0")
        >>> s.set_pruned([first, first + 1, first + 2]); s.zero_pruned_()
        >>> _ = compact(s); net[0].out_channels, net[3].in_channels
        (5, 5)
    """
    model = structures.model
    graph = structures.graph
    params_before = sum(p.numel() for p in model.parameters())
    removed = int(structures.pruned.sum())
    for layer in structures.layers:
        local = structures.pruned[layer.span].nonzero().flatten()
        if local.numel() == 0:
            continue
        if isinstance(layer, MhaHeadGroup):  # the module is replaced; its optimizer state moves with it
            compact_mha(model, layer.name, local, optimizer)
            continue
        if isinstance(layer, HeadGroup):
            all_old = {n: p for n, p in model.named_parameters()}
            removed_heads = layer.remove(model, local)
            if optimizer is not None:
                _remap_optimizer(optimizer, model, all_old, removed_heads)
            continue
        group = _pruning_group(graph, layer.root, layer, local)
        names = _names_by_param(model)
        touched = group_slices(group, model, names)
        old_params: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for s in touched:
            old_params.setdefault(s.name, []).append((s.dim, s.positions))
        for name, cut in _grouped_conv_columns(group, names).items():
            old_params.setdefault(name, []).append(cut)
        all_old = {n: p for n, p in model.named_parameters()}
        _prune_group(group)
        if optimizer is not None:
            _remap_optimizer(optimizer, model, all_old, old_params)
    structures.stale = True
    params_after = sum(p.numel() for p in model.parameters())
    return CompactionReport(removed, params_before, params_after)


def _pruning_group(graph: DependencyGraph, root: nn.Module, layer: ChannelGroup, local: torch.Tensor) -> Group:
    handler = graph.get_pruner_of_module(root).prune_out_channels
    return graph.get_pruning_group(root, handler, sorted(layer.roots_of(local).tolist()))


def _prune_group(group: Group) -> None:
    """``group.prune()``, then GroupNorms keep their group size (torch-pruning keeps ``num_groups``)."""
    sizes = {}
    for item in group.items:
        m = item.dep.target.module
        if isinstance(m, nn.GroupNorm):
            sizes[m] = m.num_channels // m.num_groups
    group.prune()
    for m, size in sizes.items():
        if m.num_channels % size:
            raise RuntimeError(f"GroupNorm lost part of a group ({m.num_channels} channels, groups of {size})")
        m.num_groups = m.num_channels // size


def _grouped_conv_columns(group: Group, names: dict[int, str]) -> dict[str, tuple[int, torch.Tensor]]:
    """Weight columns a grouped conv loses when its inputs shrink (the same column in every group)."""
    out = {}
    dg = graph_of(group)
    for item in group.items:
        m = item.dep.target.module
        grouped = isinstance(m, CONV_TYPES) and 1 < m.groups < m.out_channels
        if not grouped or is_out_channel_handler(dg, item.dep.handler):
            continue
        per_group = m.in_channels // m.groups
        cols = torch.unique(torch.as_tensor(list(item.idxs), dtype=torch.long) % per_group)
        dim = 0 if getattr(m, "transposed", False) else 1
        out[names[id(m.weight)]] = (dim, cols)
    return out


@torch.no_grad()
def prune_layer_channels(graph: DependencyGraph, root: nn.Module, layer: ChannelGroup, local: torch.Tensor) -> None:
    """Physically remove structures ``local`` (indices within ``layer``) with ``graph``, whose model holds ``root``."""
    if local.numel():
        _prune_group(_pruning_group(graph, root, layer, local))


def _remap_optimizer(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    old_by_name: dict[str, nn.Parameter],
    sliced: dict[str, list[tuple[int, torch.Tensor]]],
) -> None:
    """Point the optimizer at the new parameters and slice their state."""
    replacement: dict[int, nn.Parameter] = {}
    for name, old in old_by_name.items():
        new = _param_by_name(model, name)
        if new is old:
            continue
        replacement[id(old)] = new
        state = optimizer.state.pop(old, None)
        if state is None:
            continue
        optimizer.state[new] = _slice_state(name, state, old, new, sliced.get(name))
    for group in optimizer.param_groups:
        group["params"] = [replacement.get(id(p), p) for p in group["params"]]


def _slice_state(
    name: str,
    state: dict,
    old: nn.Parameter,
    new: nn.Parameter,
    sliced: list[tuple[int, torch.Tensor]] | None,
) -> dict:
    out = {}
    for key, value in state.items():
        if not (isinstance(value, torch.Tensor) and value.shape == old.shape):
            out[key] = value
            continue
        kept = value
        cuts: dict[int, torch.Tensor] = {}
        for dim, dead in sliced or ():
            cuts[dim] = torch.unique(torch.cat([cuts[dim], dead])) if dim in cuts else dead
        for dim, dead in cuts.items():
            keep = torch.ones(kept.shape[dim], dtype=torch.bool, device=value.device)
            keep[dead.to(value.device)] = False
            kept = kept.index_select(dim, keep.nonzero().flatten())
        if kept.shape != new.shape:
            warnings.warn(
                f"optimizer state '{key}' of '{name}' could not be remapped ({tuple(value.shape)} -> "
                f"{tuple(new.shape)}); it restarts from zero",
                stacklevel=3,
            )
            kept = torch.zeros_like(new)
        out[key] = kept
    return out
