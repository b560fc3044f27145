"""The channel group: one coupled set of layers whose channels are pruned together, with its own API.

A :class:`ChannelGroup` owns its unit ids (``ids``, ``span``), the map from root channels to
its units (:meth:`ChannelGroup.unit_ids`, which respects grouped convolutions and GroupNorm
blocks), its producer and consumer slices with the modules that hold them, and its activation
and norm sites. Criteria and methods read these instead of re-deriving ids by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .slices import CONSUMER, PRODUCER, ParamSlice

__all__ = ["ChannelGroup", "FrozenGroup", "LayerGroup"]

_CONV_OR_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class FrozenGroup:
    """A channel group that is never offered for pruning, and why.

    Attributes:
        layer: Name of the group's root layer.
        channels: Its channel count.
        kind: ``"output"`` (reaches a model output), ``"ignored"`` (touches a module kept whole),
            ``"unsupported"`` (a layer or op decayprune cannot slice), ``"norm"`` (a norm that
            would make the masked and compacted models differ), ``"inexact"`` (failed the
            empirical check of ``verify=True``).
        reason: One sentence for the report.
    """

    layer: str
    channels: int
    kind: str
    reason: str


@dataclass
class ChannelGroup:
    """One coupled group of layers sharing a channel index space (a torch-pruning group).

    Attributes:
        index: Position in ``StructureSet.layers`` (the group id).
        name: Qualified name of the root module (the first conv/linear of the group).
        root: The root module.
        num_channels: Channels of the root layer.
        channel_groups: Root channels bound into one structure (grouped convs), 1 otherwise.
        first: Global id of this group's first structure.
        size: Number of structures in this group (``num_channels // (channel_groups * block)``).
        slices: Parameter slices of this group, with global structure ids.
        structure_ids: Global structure id of each position of each slice.
        grouped_inputs: (weight, structure ids) of grouped convs reading this group's channels.
        block: Consecutive root channels bound into one structure (GroupNorm groups), 1 otherwise.

    Example:
        >>> import torch.nn as nn
        >>> from decayprune.structure import StructureSet
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 1), nn.GroupNorm(2, 4), nn.ReLU(), nn.Conv2d(4, 2, 1))
        >>> g = StructureSet(net, torch.zeros(1, 1, 2, 2)).layers[0]
        >>> g.ids.tolist(), g.block, g.unit_ids(torch.arange(4)).tolist()
        ([0, 1], 2, [0, 0, 1, 1])
        >>> [type(m).__name__ for m in g.modules(PRODUCER)], [type(m).__name__ for m in g.modules(CONSUMER)]
        (['Conv2d', 'GroupNorm'], ['Conv2d'])
    """

    index: int
    name: str
    root: nn.Module
    num_channels: int
    channel_groups: int
    first: int
    size: int
    slices: list[ParamSlice] = field(default_factory=list)
    structure_ids: list[torch.Tensor] = field(default_factory=list)
    grouped_inputs: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    block: int = 1

    # ------------------------------------------------------------------ ids
    @property
    def channels(self) -> int:
        """Channels of the root layer (``num_channels``)."""
        return self.num_channels

    @property
    def ids(self) -> torch.Tensor:
        """Global structure ids of this group."""
        return torch.arange(self.first, self.first + self.size)

    @property
    def span(self) -> slice:
        """This group's entries of any ``[S]`` tensor: ``values[group.span]``."""
        return slice(self.first, self.first + self.size)

    def local(self, ids: torch.Tensor) -> torch.Tensor:
        """Index within this group of the global structure ids ``ids`` (each of this group)."""
        return ids - self.first

    def local_of(self, roots: torch.Tensor) -> torch.Tensor:
        """Structure index within this group of each root channel."""
        return (roots // self.block) % self.size

    def unit_ids(self, roots: torch.Tensor) -> torch.Tensor:
        """Global structure id of each root channel (grouped convs and GroupNorm blocks included)."""
        return self.first + self.local_of(roots)

    def roots_of(self, local: torch.Tensor) -> torch.Tensor:
        """Every root channel of the structures ``local`` (indices within this group), sorted."""
        groups = torch.arange(self.channel_groups).view(-1, 1, 1) * self.size
        offsets = torch.arange(self.block).view(1, 1, -1)
        return ((groups + local.view(1, -1, 1)) * self.block + offsets).flatten().sort().values

    # ------------------------------------------------------------------ slices and modules
    def slices_of(self, role: str | None = None) -> Iterator[tuple[ParamSlice, torch.Tensor]]:
        """``(slice, structure ids)`` of every slice, optionally of one role (``PRODUCER`` / ``CONSUMER``)."""
        for sl, ids in zip(self.slices, self.structure_ids, strict=True):
            if role is None or sl.role == role:
                yield sl, ids

    @property
    def producers(self) -> list[ParamSlice]:
        """The slices that create the channels (out rows, norm affine parameters)."""
        return [sl for sl, _ids in self.slices_of(PRODUCER)]

    @property
    def consumers(self) -> list[ParamSlice]:
        """The slices that read the channels (the next layers' input columns)."""
        return [sl for sl, _ids in self.slices_of(CONSUMER)]

    def modules(self, role: str | None = None) -> list[nn.Module]:
        """The modules holding this group's slices (each once, in slice order)."""
        out: list[nn.Module] = []
        for sl, _ids in self.slices_of(role):
            if sl.owner is not None and all(m is not sl.owner for m in out):
                out.append(sl.owner)
        return out

    def weight_sites(self, types: tuple[type[nn.Module], ...]) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
        """``(module, positions, ids)`` of each producer slice that is the ``weight`` of a module of ``types``."""
        return [
            (sl.owner, sl.positions, ids)
            for sl, ids in self.slices_of(PRODUCER)
            if sl.owner is not None and isinstance(sl.owner, types) and sl.is_weight
        ]

    def norm_sites(self) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
        """``(batch norm, positions, ids)`` of each affine BatchNorm among the producers."""
        return self.weight_sites((_BatchNorm,))

    def activation_sites(self) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
        """The modules whose output channels are this group's activations, as ``(module, positions, ids)``.

        The norm layers among the producers when there are any (the channel as the next layer sees
        it, before the non-linearity), else the producing conv / linear layers.
        """
        return self.norm_sites() or self.weight_sites(_CONV_OR_LINEAR)

    def add_slice(self, sl: ParamSlice, ids: torch.Tensor) -> None:
        """Add one slice (e.g. a channel multiplier's vector) with the structure id of each position."""
        self.slices.append(sl)
        self.structure_ids.append(ids)

    def remove_slice(self, sl: ParamSlice) -> None:
        """Remove the slice ``sl`` (the object itself) and its ids."""
        index = next(i for i, s in enumerate(self.slices) if s is sl)
        del self.slices[index]
        del self.structure_ids[index]


LayerGroup = ChannelGroup
"""The former name of :class:`ChannelGroup` (kept for existing code)."""
