"""Prunable units: the protocol the decay engine is typed against, and its channel-group implementation.

A *unit* is what one id in ``[S]`` stands for: here one channel group's structure (the
coupled slices of every parameter that must be removed together to drop one channel: a conv's
out-channel row, the BN entries that follow, the next layer's in-channel column, residual
partners ...). :class:`PrunableUnits` is what :class:`~decayprune.decay.DecayEngine` and the
Pruner's budget need of a unit space: norms, gradient norms, rescale, keep-at-zero masks and the
cost of each unit. :class:`StructureSet` implements it over channel groups, and adds what only
channel groups have (the groups themselves, slices, compaction's graph). Head groups, element
masks and ranks are meant to implement the same protocol; tests/structure/test_units_protocol.py
runs the engine on an element-mask implementation. Per group, the slices and a map from each slice
position to its unit id make every operation a handful of tensor ops per parameter, never a Python
loop per unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ..measure.inputs import as_inputs
from .cost import CostModel
from .discovery import discover
from .groups import ChannelGroup, FrozenGroup
from .kernels import FlatPlan, SliceEntry, build_flat_plans, hold_at_zero_, merge_slices, pad
from .slices import PRODUCER, ParamSlice

__all__ = ["PrunableUnits", "StructureSet"]


@runtime_checkable
class PrunableUnits(Protocol):
    """A space of ``S`` prunable units with a keep-at-zero mask: what :class:`~decayprune.decay.DecayEngine`
    runs on.

    Units are numbered ``0 .. S-1``. Each unit belongs to one *group* (``layer_of``); the
    self-rectifying statistics compare a unit with the others of its group. Every element a
    unit owns is reached through :meth:`flat_plans` (element-level :class:`~decayprune.structure.kernels.FlatPlan` s
    of the unit's *producer* elements: zeroing them removes the unit).

    Attributes:
        num_structures: ``S``.
        layer_of: ``[S]`` group index of each unit.
        pruned: ``[S]`` bool, the units held at zero.
    """

    num_structures: int
    layer_of: torch.Tensor
    pruned: torch.Tensor

    @property
    def num_groups(self) -> int:
        """Number of groups (``layer_of`` takes values ``0 .. num_groups - 1``)."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the units' parameters live."""
        ...

    @property
    def mask_version(self) -> int:
        """Bumped whenever :attr:`pruned` changes."""
        ...

    def group_name(self, unit: int) -> str:
        """Name of the group of ``unit`` (events and reports)."""
        ...

    def set_pruned(self, ids: torch.Tensor | Sequence[int], value: bool = True) -> None:
        """Mark units as held at zero (or release them)."""
        ...

    def set_mask(self, pruned: torch.Tensor) -> None:
        """Replace the whole ``[S]`` mask."""
        ...

    def keep_vector(self) -> torch.Tensor:
        """Float ``[S + 1]`` on :attr:`device`: 0 for pruned units, 1 otherwise (last: outside any unit)."""
        ...

    def producer_norms(self, layers: Iterable[int] | None = None) -> torch.Tensor:
        """L2 norm of each unit's producer elements, ``[S]``."""
        ...

    def grad_norms(self, layers: Iterable[int] | None = None) -> torch.Tensor:
        """L2 norm of the gradient on each unit's producer elements, ``[S]``."""
        ...

    def scale_(self, factors: torch.Tensor, *, role: str | None = PRODUCER) -> None:
        """Multiply each unit's producer elements by ``factors[s]`` (the decay's rescale)."""
        ...

    def zero_pruned_(self, optimizer: torch.optim.Optimizer | None = None, grads: bool = True) -> None:
        """Hold pruned units at exactly zero: weights, gradients and the optimizer's per-element state."""
        ...

    def flat_plans(self, role: str | None = PRODUCER) -> list[FlatPlan]:
        """The element-level kernels over the producer elements (the engine's fused passes)."""
        ...

    def macs(self, pruned: torch.Tensor | None = None) -> float:
        """Cost (MACs) of the model with ``pruned`` (default: the current mask) removed."""
        ...

    def params(self, pruned: torch.Tensor | None = None) -> float:
        """Parameter count with ``pruned`` removed."""
        ...


class StructureSet:
    """All prunable channel groups of ``model``.

    Args:
        model: The network. Its parameters are read and written in place.
        example_inputs: Inputs for tracing (batch 1 is enough): a tensor, a tuple of positional inputs, or a
            dict of keyword inputs (``model(**inputs)``, e.g. ``input_ids`` and ``attention_mask``).
        ignored_layers: Modules (or module names) whose output channels must never be pruned.
        ignore_classifier: Protect the model outputs: no group whose channels reach an output
            (tensor, tuple, dict or ``ModelOutput``) is prunable.
        round_to: Refused (it rounded the *pruned* count per layer); kept widths as multiples are
            ``PruneSettings(width_multiple=N)``.
        ignored_types: Module classes (or class names) kept whole, like ``ignored_layers``.
        verify: Run the empirical exactness check (:func:`~decayprune.structure.exactness.find_inexact`)
            and refuse groups whose compaction would change the outputs.
        tolerance: Relative output error the check accepts (float64).
        head_units: One attention-head unit: ``"kv"`` (a KV head with its query heads) or
            ``"query"`` (one query head of every KV group; see :mod:`~decayprune.structure.heads`).

    Groups that are not offered are listed in :attr:`frozen` with the reason.

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
        example_inputs: torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
        *,
        ignored_layers: Iterable[nn.Module | str] = (),
        ignore_classifier: bool = True,
        round_to: None = None,
        ignored_types: Sequence[type[nn.Module] | str] = (),
        verify: bool | str = "auto",
        tolerance: float = 1e-6,
        head_units: str = "kv",
    ) -> None:
        if round_to is not None:
            raise ValueError(
                f"StructureSet(round_to={round_to!r}): rounding the number of pruned channels no longer applies; "
                "use PruneSettings(width_multiple=N): the channels kept per layer are a multiple of N"
            )
        if not tolerance > 0:
            raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
        self.model = model
        self.example_inputs = as_inputs(example_inputs)
        self.protect_outputs = ignore_classifier
        self.verify = verify
        self.tolerance = tolerance
        self.head_units = head_units
        found = discover(
            model,
            self.example_inputs,
            ignored_layers=ignored_layers,
            ignored_types=ignored_types,
            protect_outputs=ignore_classifier,
            verify=verify,
            tolerance=tolerance,
            head_units=head_units,
        )
        self.graph = found.graph
        self.ignored_layers = found.ignored_layers
        self.frozen: list[FrozenGroup] = found.frozen
        self.names = found.names
        self.layers: list[ChannelGroup] = found.layers
        self.num_structures = sum(layer.size for layer in self.layers)
        self.layer_of = (
            torch.cat([torch.full((layer.size,), layer.index, dtype=torch.long) for layer in self.layers])
            if self.layers
            else torch.zeros(0, dtype=torch.long)
        )
        self.pruned = torch.zeros(self.num_structures, dtype=torch.bool)
        self.stale = False
        self._cache: dict = {}  # slice entries, flat plans and keep vectors, per role and device
        self._mask_version = 0
        self.cost = CostModel(model, self.example_inputs, self)

    @property
    def unsupported(self) -> list[FrozenGroup]:
        """The frozen groups that touch a layer or op decayprune cannot slice."""
        return [f for f in self.frozen if f.kind == "unsupported"]

    @property
    def num_groups(self) -> int:
        """Number of channel groups (``len(layers)``)."""
        return len(self.layers)

    def group_name(self, unit: int) -> str:
        """Name of the group that holds structure ``unit`` (for events and reports)."""
        return self.layers[int(self.layer_of[unit])].name

    def group_of(self, unit: int) -> ChannelGroup:
        """The channel group that holds structure ``unit``."""
        return self.layers[int(self.layer_of[unit])]

    # ------------------------------------------------------------------ per-structure reduce / broadcast
    @property
    def device(self) -> torch.device:
        """Where the model's sliced parameters live (the CPU for a model with no group)."""
        for layer in self.layers:
            return layer.slices[0].param.device
        return torch.device("cpu")

    def _entries(self, role: str | None) -> list[SliceEntry]:
        """The slices of ``role`` merged per (parameter, dim), over every layer (cached)."""
        key = ("entries", role)
        cache = self._cache
        if key not in cache:
            cache[key] = merge_slices(self.parameter_slices(role), self.num_structures)
        return cache[key]

    def _layer_mask(self, layers: Iterable[int] | None, device: torch.device) -> torch.Tensor | None:
        if layers is None:
            return None
        chosen = torch.zeros(len(self.layers), dtype=torch.bool)
        chosen[list(layers)] = True
        return chosen[self.layer_of].to(device)

    @torch.no_grad()
    def reduce(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        role: str | None = PRODUCER,
        source: str = "weight",
        layers: Iterable[int] | None = None,
    ) -> torch.Tensor:
        """Sum, over the slices of each structure, of a per-position value; shape ``[S]``.

        Each parameter tensor (``source="grad"``: its gradient; missing gradients count as 0)
        is viewed as ``[positions, -1]`` along its sliced dim and ``fn`` maps that view to one
        value per position. ``fn=None`` is the sum of squares, computed by :class:`FlatPlan` (a
        handful of kernels whatever the model size; on the CPU one row norm per parameter);
        other ``fn`` run once per (parameter, dim). ``role``: ``PRODUCER``,
        ``CONSUMER`` or ``None`` (both). ``layers``: only these layer groups (others are 0).

        Example:
            >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
            >>> s = StructureSet(net, torch.randn(1, 2))
            >>> s.reduce(lambda x: torch.full((x.shape[0],), float(x.shape[1]))).tolist()
            [3.0, 3.0, 3.0]
        """
        if source not in ("weight", "grad"):
            raise ValueError(f"source must be 'weight' or 'grad', got {source!r}")
        device = self.device
        if fn is None:
            out = torch.zeros(self.num_structures + 1, device=device, dtype=torch.float32)
            for plan in self.flat_plans(role):
                plan.add_sumsq_(out, source)
            out = out[: self.num_structures]
        else:
            out = self._reduce_slow(fn, role, source, device)
        mask = self._layer_mask(layers, device)
        return out if mask is None else torch.where(mask, out, torch.zeros_like(out))

    def _reduce_slow(
        self, fn: Callable[[torch.Tensor], torch.Tensor], role: str | None, source: str, device: torch.device
    ) -> torch.Tensor:
        out = torch.zeros(self.num_structures + 1, device=device, dtype=torch.float32)
        for entry in self._entries(role):
            tensor = entry.param if source == "weight" else entry.param.grad
            if tensor is None:
                continue
            view = tensor.detach().movedim(entry.row_dim, 0).reshape(tensor.shape[entry.row_dim], -1)
            out.index_add_(0, entry.ids_on(view.device), fn(view).float())
        return out[: self.num_structures]

    def broadcast(
        self, values: torch.Tensor, *, role: str | None = PRODUCER, fill: float = 1.0
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-structure ``values`` spread over every position of each slice.

        Returns ``(parameter, tensor)`` pairs; each tensor broadcasts against its parameter
        (size 1 except along the sliced dim) and holds ``fill`` where no structure sits.

        Example:
            >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
            >>> s = StructureSet(net, torch.randn(1, 2))
            >>> [tuple(v.shape) for _p, v in s.broadcast(torch.tensor([1., 2., 3.]))]
            [(3, 1), (3,)]
        """
        device = self.device
        padded = pad(values.to(device, torch.float32), fill)
        out = []
        for entry in self._entries(role):
            shape = [1] * entry.param.dim()
            shape[entry.row_dim] = -1
            out.append((entry.param, padded[entry.ids_on(device)].view(shape)))
        return out

    @torch.no_grad()
    def scale_(self, factors: torch.Tensor, *, role: str | None = PRODUCER) -> None:
        """Multiply every slice of ``role`` by its structure's factor (one fused pass).

        Example:
            >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
            >>> s = StructureSet(net, torch.randn(1, 2))
            >>> s.scale_(torch.tensor([0., 1., 1.]))
            >>> w = net[0].weight.detach()
            >>> float(w[0].abs().sum()), bool(w[1].abs().sum() > 0)
            (0.0, True)
        """
        padded = pad(factors.to(self.device, torch.float32), 1.0)
        for plan in self.flat_plans(role):
            plan.mul_(plan.params, plan.gather(padded))

    def flat_plans(self, role: str | None = PRODUCER) -> list[FlatPlan]:
        """Element-level plans of the slices of ``role`` on the model's current device (cached).

        One plan per pass; a parameter sliced twice (e.g. a conv's rows and columns with
        ``role=None``) appears in two passes so no pass writes one tensor twice.
        """
        device = self.device
        key = ("flat", role, device)
        cache = self._cache
        plans = cache.get(key)
        if plans is None or not all(plan.matches_layout() for plan in plans):  # e.g. after a channels-last switch
            cache[key] = plans = build_flat_plans(self._entries(role), self.num_structures, device)
        return plans

    def producer_norms(self, layers: Iterable[int] | None = None) -> torch.Tensor:
        """L2 norm of each structure's producer slices (``||x_s||`` in DPM); shape ``[S]``."""
        return self.reduce(role=PRODUCER, layers=layers).sqrt()

    def grad_norms(self, layers: Iterable[int] | None = None) -> torch.Tensor:
        """L2 norm of the gradient on each structure's producer slices; shape ``[S]``."""
        return self.reduce(role=PRODUCER, source="grad", layers=layers).sqrt()

    def group_sq_norms(self, include_consumers: bool = True) -> torch.Tensor:
        """Squared L2 norm over all coupled slices (producers and, optionally, consumers)."""
        return self.reduce(role=None if include_consumers else PRODUCER)

    def slice_counts(self, include_consumers: bool = True, elements: bool = True) -> torch.Tensor:
        """Parameter elements (``elements=False``: parameter slices) in each structure (on the CPU).

        Used to mean-reduce norms over the elements or over the coupled slices of a structure.
        """
        if elements:

            def fn(view: torch.Tensor) -> torch.Tensor:
                return torch.full((view.shape[0],), float(view.shape[1]), device=view.device)
        else:

            def fn(view: torch.Tensor) -> torch.Tensor:
                return torch.ones(view.shape[0], device=view.device)

        return self.reduce(fn, role=None if include_consumers else PRODUCER).cpu()

    # ------------------------------------------------------------------ writing
    @torch.no_grad()
    def scale_producers_(self, factors: torch.Tensor, layers: Iterable[int] | None = None) -> None:
        """Multiply every structure's producer slices by ``factors[s]`` (1 leaves it as is)."""
        factors = factors.to(self.device, torch.float32)
        mask = self._layer_mask(layers, factors.device)
        self.scale_(factors if mask is None else torch.where(mask, factors, torch.ones_like(factors)))

    def slices_changed(self) -> None:
        """Forget cached plans after slices were added or removed (e.g. a channel multiplier).

        Clears the slice entries and flat plans too: a plan built before a multiplier was added
        would leave it out of every decay, keep-at-zero and norm (and keep a removed one in).
        """
        self._cache.clear()

    def set_pruned(self, ids: torch.Tensor | Sequence[int], value: bool = True) -> None:
        """Mark structures as pruned (held at zero) or un-pruned."""
        self.pruned[torch.as_tensor(ids, dtype=torch.long)] = value
        self._mask_changed()

    def set_mask(self, pruned: torch.Tensor) -> None:
        """Replace the whole pruned mask (a bool tensor of length ``num_structures``)."""
        if pruned.shape != self.pruned.shape:
            raise ValueError(f"mask has shape {tuple(pruned.shape)}, expected ({self.num_structures},)")
        self.pruned.copy_(pruned.bool())
        self._mask_changed()

    def _mask_changed(self) -> None:
        self._mask_version += 1

    @property
    def mask_version(self) -> int:
        """Bumped by every :meth:`set_pruned` / :meth:`set_mask` (to rebuild derived device state)."""
        return self._mask_version

    def keep_vector(self) -> torch.Tensor:
        """Float ``[S + 1]`` on the model's device: 0 for pruned structures, 1 otherwise.

        The extra last entry (1) is the slot of positions that belong to no structure. Rebuilt
        only when the mask changes.
        """
        device = self.device
        key = ("keep", device)
        cache = self._cache
        cached = cache.get(key)
        if cached is None or cached[0] != self.mask_version:
            keep = pad((~self.pruned).to(torch.float32), 1.0).to(device)
            cache[key] = cached = (self.mask_version, keep)
        return cached[1]

    @torch.no_grad()
    def zero_pruned_(self, optimizer: torch.optim.Optimizer | None = None, grads: bool = True) -> None:
        """Hold pruned structures at exactly zero: weights, gradients and optimizer state."""
        if not self.pruned.any():
            return
        for plan in self.flat_plans(PRODUCER):
            hold_at_zero_(plan, **self._held(plan), grads=grads, optimizer=optimizer)

    @torch.no_grad()
    def zero_grads_of_pruned_(self) -> None:
        """Zero only the gradients of pruned structures (call after backward)."""
        if not self.pruned.any():
            return
        for plan in self.flat_plans(PRODUCER):
            hold_at_zero_(plan, **self._held(plan), weights=False)

    def _held(self, plan: FlatPlan) -> dict:
        version = ("mask", self.mask_version)
        return {
            "factors": lambda: plan.gather(self.keep_vector(), "keep", version),
            "rows": lambda: plan.dead_rows(self.pruned, version),
        }

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
                "pruned": int(self.pruned[layer.span].sum()),
            }
            for layer in self.layers
        ]

    def parameter_slices(self, role: str | None = None) -> Iterator[tuple[ChannelGroup, ParamSlice, torch.Tensor]]:
        """Iterate (group, slice, structure ids) for every slice, optionally of one role."""
        for layer in self.layers:
            for s, ids in layer.slices_of(role):
                yield layer, s, ids
