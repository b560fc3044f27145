"""Translate torch-pruning dependency groups into parameter slices.

A torch-pruning group lists, for one root layer, every (module, pruning handler, indices)
that must change together. This module turns each item into the parameter slices it
touches, so the rest of decayprune can read and write channel groups with plain tensor
ops (norms, rescaling, masks) instead of physically removing anything.

Roles:
    * ``producer``: slices that create the channel (out-channel rows of conv/linear, the
      affine parameters of channel-wise layers such as BN/LN/GN/PReLU, depthwise convs).
      Zeroing all producer slices of a channel makes the channel output exactly zero.
    * ``consumer``: slices that read the channel (in-channel columns of conv/linear).
      They become dead once the producers are zero and disappear at compaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .graph import OPTYPE, Group, graph_of, is_out_channel_handler, module_name
from .hf_layers import conv1d_type

PRODUCER = "producer"
CONSUMER = "consumer"

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
"""The convolution classes decayprune slices (transposed ones included)."""
_CONV = CONV_TYPES
_CHANNELWISE = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.PReLU,
)
SUPPORTED_MODULES: tuple[type[nn.Module], ...] = _CONV + _CHANNELWISE + (nn.Linear, nn.LayerNorm, nn.Embedding)


def supported_types() -> tuple[type[nn.Module], ...]:
    """The layer types decayprune slices: :data:`SUPPORTED_MODULES` plus transformers' ``Conv1D`` once loaded."""
    conv1d = conv1d_type()
    return SUPPORTED_MODULES + ((conv1d,) if conv1d is not None else ())


class UnsupportedModelError(ValueError):
    """Raised when a model contains a layer decayprune cannot prune safely."""


@dataclass
class ParamSlice:
    """Positions of one parameter along one dimension that belong to a group's channels.

    Attributes:
        name: Qualified parameter name in the model (``layer1.0.conv1.weight``).
        param: The parameter object (replaced after compaction; use ``name`` to look up).
        dim: Dimension of ``param`` that is sliced.
        positions: Indices along ``dim`` (1-D LongTensor).
        roots: Root-channel index of each position (same length as ``positions``).
        role: ``"producer"`` or ``"consumer"``.
        owner: The module that holds ``param`` (None for a parameter used outside any layer,
            e.g. a class token); no caller needs to split ``name`` to find it.
    """

    name: str
    param: torch.Tensor
    dim: int
    positions: torch.Tensor
    roots: torch.Tensor
    role: str
    owner: nn.Module | None = None

    @property
    def attribute(self) -> str:
        """The name of ``param`` on its owner (``"weight"``, ``"bias"``, a gate's name ...)."""
        if self.owner is not None:
            for attr, p in self.owner.named_parameters(recurse=False):
                if p is self.param:
                    return attr
        return self.name.rsplit(".", 1)[-1]  # the parameter was replaced (after compaction)

    @property
    def is_weight(self) -> bool:
        """True when this slice is its owner's ``weight``."""
        return self.owner is not None and getattr(self.owner, "weight", None) is self.param


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, _CONV) and module.groups == module.out_channels and module.out_channels > 1


def _slices_for_item(
    module: nn.Module,
    out_side: bool,
    positions: torch.Tensor,
    roots: torch.Tensor,
    names: dict[int, str],
) -> list[ParamSlice]:
    """Return the parameter slices of one group item (module, side, indices)."""

    def make(param: torch.Tensor | None, dim: int, role: str, pos: torch.Tensor = positions) -> list[ParamSlice]:
        if param is None:
            return []
        return [ParamSlice(names[id(param)], param, dim % param.dim(), pos, roots, role, module)]

    if isinstance(module, _CONV):
        transposed = bool(getattr(module, "transposed", False))
        if _is_depthwise(module):
            return make(module.weight, 0, PRODUCER) + make(module.bias, 0, PRODUCER)
        if out_side:
            return make(module.weight, 1 if transposed else 0, PRODUCER) + make(module.bias, 0, PRODUCER)
        if module.groups > 1:
            # Grouped conv: input channel i is column i % (in/groups) of the rows of its group.
            # The column is shared by all groups, so it is not a per-channel slice; skip it here
            # (torch-pruning still removes it correctly at compaction).
            return []
        return make(module.weight, 0 if transposed else 1, CONSUMER)
    conv1d = conv1d_type()
    if conv1d is not None and isinstance(module, conv1d):  # weight stored [in, out]
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        if out_side:
            return make(weight, 1, PRODUCER) + make(bias, 0, PRODUCER)
        return make(weight, 0, CONSUMER)
    if isinstance(module, nn.Linear):
        if out_side:
            return make(module.weight, 0, PRODUCER) + make(module.bias, 0, PRODUCER)
        return make(module.weight, 1, CONSUMER)
    if isinstance(module, _CHANNELWISE):
        return make(getattr(module, "weight", None), 0, PRODUCER) + make(getattr(module, "bias", None), 0, PRODUCER)
    if isinstance(module, nn.LayerNorm):
        return make(module.weight, -1, PRODUCER) + make(module.bias, -1, PRODUCER)
    if isinstance(module, nn.Embedding):
        return make(module.weight, 1, PRODUCER)
    if isinstance(module, nn.Parameter):
        return []  # resolved by the caller, which knows the pruning dim
    return []


def group_slices(group: Group, model: nn.Module, names: dict[int, str]) -> list[ParamSlice]:
    """Collect the parameter slices of a full-index torch-pruning group.

    Args:
        group: A group from ``DependencyGraph.get_all_groups`` (full indices).
        model: The traced model (used only for error messages).
        names: ``id(parameter) -> qualified name``.

    Returns:
        One :class:`ParamSlice` per (parameter, dim) touched by the group.

    Raises:
        UnsupportedModelError: The group touches a layer type decayprune cannot slice.
    """
    dg = graph_of(group)
    out: list[ParamSlice] = []
    for item in group.items:
        dep, idxs = item.dep, item.idxs
        target = dep.target
        module = target.module
        if target.type in (
            OPTYPE.CONCAT,
            OPTYPE.SPLIT,
            OPTYPE.ELEMENTWISE,
            OPTYPE.RESHAPE,
            OPTYPE.UNBIND,
            OPTYPE.EXPAND,
            OPTYPE.SLICE,
            OPTYPE.OUTPUT,
        ):
            continue
        if len(idxs) == 0:
            continue
        positions = torch.as_tensor(list(idxs), dtype=torch.long)
        roots = torch.as_tensor(list(item.root_idxs), dtype=torch.long)
        if target.type == OPTYPE.PARAMETER:
            # The node knows the parameter's channel dim; torch-pruning's shared pruner object only
            # holds whichever dim it was last called with.
            dim = target.pruning_dim if getattr(target, "pruning_dim", -1) is not None else -1
            out.append(ParamSlice(names[id(module)], module, dim % module.dim(), positions, roots, PRODUCER))
            continue
        if not isinstance(module, supported_types()):
            layer = module_name(dg, module)
            raise UnsupportedModelError(
                f"layer '{layer}' ({type(module).__name__}) is coupled to prunable channels but decayprune "
                f"cannot slice it; supported layers: {', '.join(sorted(t.__name__ for t in supported_types()))}"
            )
        out_side = is_out_channel_handler(dg, dep.handler)
        out.extend(_slices_for_item(module, out_side, positions, roots, names))
    return _merge_duplicates(out)


def grouped_conv_inputs(group: Group) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The grouped (non-depthwise) convs that read a group's channels, with the root of each input.

    Such a conv reads input channel ``i`` through weight column ``i % (in / groups)``, shared by
    every group, so no per-channel slice describes it (:func:`group_slices` leaves it out); the
    cost model still needs to know which structures feed it to count its shrinking inputs.
    """
    dg = graph_of(group)
    out = []
    for item in group.items:
        module = item.dep.target.module
        if not (isinstance(module, _CONV) and 1 < module.groups < module.out_channels):
            continue
        if is_out_channel_handler(dg, item.dep.handler):
            continue
        out.append((module.weight, torch.as_tensor(list(item.root_idxs), dtype=torch.long)))
    return out


def _merge_duplicates(slices: list[ParamSlice]) -> list[ParamSlice]:
    """Merge slices that hit the same (param, dim, role), keeping unique positions."""
    merged: dict[tuple[int, int, str], ParamSlice] = {}
    for s in slices:
        key = (id(s.param), s.dim, s.role)
        if key not in merged:
            merged[key] = s
            continue
        prev = merged[key]
        pos = torch.cat([prev.positions, s.positions])
        roots = torch.cat([prev.roots, s.roots])
        uniq, first = _unique_first(pos)
        merged[key] = ParamSlice(prev.name, prev.param, prev.dim, uniq, roots[first], prev.role, prev.owner)
    return list(merged.values())


def _unique_first(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique values and the index of their first occurrence."""
    uniq, inverse = torch.unique(values, return_inverse=True)
    first = torch.full((uniq.numel(),), values.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(values.numel()), reduce="amin")
    return uniq, first
