"""StructureSet: every prunable channel group of a model, as vectorised slices.

A *structure* is one channel group: the coupled slices of every parameter that must be
removed together to drop one channel (a conv's out-channel row, the BN entries that follow,
the next layer's in-channel column, residual partners ...). torch-pruning's DependencyGraph
finds the coupling; this module keeps, per coupled *layer group*, the parameter slices and a
map from each slice position to its structure id, so norms, gradient norms, rescaling and
keep-at-zero masks are a handful of tensor ops per parameter, never a Python loop per channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch_pruning as tp

from .cost import CostModel
from .slices import (
    CONSUMER,
    PRODUCER,
    SUPPORTED_MODULES,
    ParamSlice,
    UnsupportedModelError,
    group_slices,
    grouped_conv_inputs,
)


@dataclass
class LayerGroup:
    """One coupled group of layers sharing a channel index space (a torch-pruning group).

    Attributes:
        index: Position in ``StructureSet.layers``.
        name: Qualified name of the root module (the first conv/linear of the group).
        root: The root module.
        num_channels: Channels of the root layer.
        channel_groups: Root channels bound into one structure (grouped convs), 1 otherwise.
        first: Global id of this layer's first structure.
        size: Number of structures in this layer (``num_channels // channel_groups``).
        slices: Parameter slices of this group, with global structure ids.
        structure_ids: Global structure id of each position of each slice.
        grouped_inputs: (weight, structure ids) of grouped convs reading this group's channels.
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
    grouped_inputs: list[tuple[nn.Parameter, torch.Tensor]] = field(default_factory=list)

    @property
    def ids(self) -> torch.Tensor:
        """Global structure ids of this layer."""
        return torch.arange(self.first, self.first + self.size)


def _as_tuple(example_inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple:
    return tuple(example_inputs) if isinstance(example_inputs, (list, tuple)) else (example_inputs,)


def find_classifier(model: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor]) -> nn.Module | None:
    """Return the last conv/linear layer whose output is the model output, if any.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> find_classifier(net, torch.randn(1, 4)) is net[2]
        True
    """
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, out: seen.append((mod, out)))
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(*_as_tuple(example_inputs))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if not isinstance(output, torch.Tensor):
        return None
    for module, out in reversed(seen):
        if isinstance(out, torch.Tensor) and out.shape == output.shape and torch.equal(out, output):
            return module
    return None


class StructureSet:
    """All prunable channel groups of ``model``.

    Args:
        model: The network. Its parameters are read and written in place.
        example_inputs: Inputs for tracing (batch 1 is enough).
        ignored_layers: Modules whose output channels must never be pruned.
        ignore_classifier: Also ignore the layer that produces the model output.
        round_to: Pruned counts per layer are multiples of this (``None``: any count).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
        ...                     nn.Flatten(), nn.Linear(8 * 6 * 6, 2))
        >>> s = StructureSet(net, torch.randn(1, 3, 8, 8))
        >>> s.num_structures, s.layers[0].name
        (8, '0')
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: torch.Tensor | Sequence[torch.Tensor],
        *,
        ignored_layers: Iterable[nn.Module] = (),
        ignore_classifier: bool = True,
        round_to: int | None = None,
    ) -> None:
        if round_to is not None and round_to < 1:
            raise ValueError(f"round_to must be a positive integer or None, got {round_to!r}")
        self.model = model
        self.example_inputs = _as_tuple(example_inputs)
        self.round_to = round_to
        ignored = list(ignored_layers)
        if ignore_classifier:
            head = find_classifier(model, self.example_inputs)
            if head is not None:
                ignored.append(head)
        self.ignored_layers = ignored
        self._check_supported(model, ignored)
        was_training = model.training
        try:
            self.graph = tp.DependencyGraph().build_dependency(model, example_inputs=self.example_inputs)
        finally:
            model.train(was_training)  # torch-pruning's tracer calls model.eval() and leaves it so
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.module_names = {m: n for n, m in model.named_modules()}
        self.layers: list[LayerGroup] = []
        self._build_layers()
        self.num_structures = sum(layer.size for layer in self.layers)
        self.layer_of = torch.cat([torch.full((l.size,), l.index, dtype=torch.long) for l in self.layers]) \
            if self.layers else torch.zeros(0, dtype=torch.long)
        self.pruned = torch.zeros(self.num_structures, dtype=torch.bool)
        self._zero_plan: list[tuple[nn.Parameter, int, torch.Tensor]] | None = None
        self.stale = False
        self.cost = CostModel(model, self.example_inputs, self)

    # ------------------------------------------------------------------ building
    @staticmethod
    def _check_supported(model: nn.Module, ignored: list[nn.Module]) -> None:
        ignored_ids = {id(m) for m in ignored}
        for name, module in model.named_modules():
            own = list(module.parameters(recurse=False))
            if not own or id(module) in ignored_ids or isinstance(module, SUPPORTED_MODULES):
                continue
            raise UnsupportedModelError(
                f"layer '{name}' ({type(module).__name__}) has its own parameters and is not a layer decayprune "
                f"can slice; supported: {', '.join(sorted(t.__name__ for t in SUPPORTED_MODULES))}. "
                "Pass it in ignored_layers to keep it whole."
            )

    def _build_layers(self) -> None:
        first = 0
        # Parameters of ignored modules decayprune cannot slice are kept whole: torch-pruning does not
        # know how such a module maps channels (it treats its op as element-wise), so any group that
        # reaches one of them is wrong and is skipped rather than cut.
        whole = {
            id(p) for m in self.ignored_layers if not isinstance(m, SUPPORTED_MODULES) for p in m.parameters()
        }
        groups = self.graph.get_all_groups(
            ignored_layers=self.ignored_layers, root_module_types=(nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
        )
        for group in groups:
            root = group[0].dep.target.module
            pruner = self.graph.get_pruner_of_module(root)
            channels = pruner.get_out_channels(root)
            channel_groups = self._channel_groups(group)
            if channels is None or channels < 2 or channels % channel_groups:
                continue
            slices = group_slices(group, self.model, self.names)
            if not any(s.role == PRODUCER for s in slices) or any(id(s.param) in whole for s in slices):
                continue
            size = channels // channel_groups
            layer = LayerGroup(
                index=len(self.layers),
                name=self.module_names.get(root, type(root).__name__),
                root=root,
                num_channels=channels,
                channel_groups=channel_groups,
                first=first,
                size=size,
                slices=slices,
                structure_ids=[first + (s.roots % size) for s in slices],
                grouped_inputs=[(w, first + roots % size) for w, roots in grouped_conv_inputs(group)],
            )
            self.layers.append(layer)
            first += size

    def _channel_groups(self, group: tp.dependency.Group) -> int:
        """Channels bound together by grouped (non-depthwise) convolutions, as torch-pruning does."""
        count = 1
        for item in group.items:
            module = item.dep.target.module
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and 1 < module.groups < module.out_channels:
                count = max(count, module.groups)
        return count

    # ------------------------------------------------------------------ reading
    def _sumsq(self, role: str | None, use_grad: bool, layers: Iterable[int] | None = None) -> torch.Tensor:
        device = self._device()
        acc = torch.zeros(self.num_structures, device=device, dtype=torch.float32)
        for layer in self._layers(layers):
            for s, ids in zip(layer.slices, layer.structure_ids):
                if role is not None and s.role != role:
                    continue
                tensor = s.param.grad if use_grad else s.param
                if tensor is None:
                    continue
                per_pos = tensor.detach().float().pow(2).movedim(s.dim, 0).reshape(tensor.shape[s.dim], -1).sum(1)
                acc.index_add_(0, ids.to(device), per_pos[s.positions.to(device)])
        return acc

    def _layers(self, layers: Iterable[int] | None) -> Iterable[LayerGroup]:
        return self.layers if layers is None else (self.layers[i] for i in layers)

    def _device(self) -> torch.device:
        for layer in self.layers:
            return layer.slices[0].param.device
        return torch.device("cpu")

    def producer_norms(self, layers: Iterable[int] | None = None) -> torch.Tensor:
        """L2 norm of each structure's producer slices (``||x_s||`` in DPM); shape ``[S]``."""
        return self._sumsq(PRODUCER, False, layers).sqrt()

    def grad_norms(self, layers: Iterable[int] | None = None) -> torch.Tensor:
        """L2 norm of the gradient on each structure's producer slices; shape ``[S]``."""
        return self._sumsq(PRODUCER, True, layers).sqrt()

    def group_sq_norms(self, include_consumers: bool = True) -> torch.Tensor:
        """Squared L2 norm over all coupled slices (producers and, optionally, consumers)."""
        return self._sumsq(None if include_consumers else PRODUCER, False)

    def slice_counts(self, include_consumers: bool = True, elements: bool = True) -> torch.Tensor:
        """Parameter elements (``elements=False``: parameter slices) in each structure.

        Used to mean-reduce norms over the elements or over the coupled slices of a structure.
        """
        counts = torch.zeros(self.num_structures)
        for layer in self.layers:
            for s, ids in zip(layer.slices, layer.structure_ids):
                if not include_consumers and s.role != PRODUCER:
                    continue
                per_pos = s.param.numel() // s.param.shape[s.dim] if elements else 1
                counts.index_add_(0, ids, torch.full((ids.numel(),), float(per_pos)))
        return counts

    # ------------------------------------------------------------------ writing
    @torch.no_grad()
    def scale_producers_(self, factors: torch.Tensor, layers: Iterable[int] | None = None) -> None:
        """Multiply every structure's producer slices by ``factors[s]`` (1 leaves it as is)."""
        for layer in self._layers(layers):
            for s, ids in zip(layer.slices, layer.structure_ids):
                if s.role != PRODUCER:
                    continue
                param = s.param
                vec = torch.ones(param.shape[s.dim], device=param.device, dtype=param.dtype)
                vec[s.positions.to(param.device)] = factors.to(param.device, param.dtype)[ids.to(param.device)]
                shape = [1] * param.dim()
                shape[s.dim] = -1
                param.mul_(vec.view(shape))

    def slices_changed(self) -> None:
        """Forget cached plans after slices were added or removed (e.g. a channel multiplier)."""
        self._zero_plan = None

    def set_pruned(self, ids: torch.Tensor | Sequence[int], value: bool = True) -> None:
        """Mark structures as pruned (held at zero) or un-pruned."""
        self.pruned[torch.as_tensor(ids, dtype=torch.long)] = value
        self._zero_plan = None

    def set_mask(self, pruned: torch.Tensor) -> None:
        """Replace the whole pruned mask (a bool tensor of length ``num_structures``)."""
        if pruned.shape != self.pruned.shape:
            raise ValueError(f"mask has shape {tuple(pruned.shape)}, expected ({self.num_structures},)")
        self.pruned.copy_(pruned.bool())
        self._zero_plan = None

    def _plan(self) -> list[tuple[nn.Parameter, int, torch.Tensor]]:
        if self._zero_plan is None:
            plan = []
            for layer in self.layers:
                for s, ids in zip(layer.slices, layer.structure_ids):
                    if s.role != PRODUCER:
                        continue
                    dead = s.positions[self.pruned[ids]]
                    if dead.numel():
                        plan.append((s.param, s.dim, dead.to(s.param.device)))
            self._zero_plan = plan
        return self._zero_plan

    @torch.no_grad()
    def zero_pruned_(self, optimizer: torch.optim.Optimizer | None = None, grads: bool = True) -> None:
        """Hold pruned structures at exactly zero: weights, gradients and optimizer state."""
        for param, dim, dead in self._plan():
            param.index_fill_(dim, dead, 0)
            if grads and param.grad is not None:
                param.grad.index_fill_(dim, dead, 0)
            if optimizer is not None:
                for value in optimizer.state.get(param, {}).values():
                    if isinstance(value, torch.Tensor) and value.shape == param.shape:
                        value.index_fill_(dim, dead, 0)

    @torch.no_grad()
    def zero_grads_of_pruned_(self) -> None:
        """Zero only the gradients of pruned structures (call after backward)."""
        for param, dim, dead in self._plan():
            if param.grad is not None:
                param.grad.index_fill_(dim, dead, 0)

    # ------------------------------------------------------------------ cost
    def macs(self, pruned: torch.Tensor | None = None) -> float:
        """MACs of the model with ``pruned`` (default: the current mask) removed."""
        return self.cost.macs(self.pruned if pruned is None else pruned)

    def params(self, pruned: torch.Tensor | None = None) -> float:
        """Parameter count with ``pruned`` removed (conv/linear/norm parameters)."""
        return self.cost.params(self.pruned if pruned is None else pruned)

    def describe(self) -> list[dict]:
        """One row per layer group: name, channels, structures, pruned count."""
        return [
            {
                "layer": layer.name,
                "channels": layer.num_channels,
                "structures": layer.size,
                "pruned": int(self.pruned[layer.first : layer.first + layer.size].sum()),
            }
            for layer in self.layers
        ]

    def parameter_slices(self, role: str | None = None) -> Iterable[tuple[LayerGroup, ParamSlice, torch.Tensor]]:
        """Iterate (layer, slice, structure ids) for every slice, optionally of one role."""
        for layer in self.layers:
            for s, ids in zip(layer.slices, layer.structure_ids):
                if role is None or s.role == role:
                    yield layer, s, ids


__all__ = ["StructureSet", "LayerGroup", "find_classifier", "UnsupportedModelError", "PRODUCER", "CONSUMER"]
