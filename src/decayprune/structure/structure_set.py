"""StructureSet: every prunable channel group of a model, as vectorised slices.

A *structure* is one channel group: the coupled slices of every parameter that must be
removed together to drop one channel (a conv's out-channel row, the BN entries that follow,
the next layer's in-channel column, residual partners ...). torch-pruning's DependencyGraph
finds the coupling; this module keeps, per coupled *layer group*, the parameter slices and a
map from each slice position to its structure id, so norms, gradient norms, rescaling and
keep-at-zero masks are a handful of tensor ops per parameter, never a Python loop per channel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from .cost import CostModel
from .exactness import find_inexact, gn_block, risk_reason, static_reason
from .hf_layers import customized_pruners
from .outputs import OutputRecorder, output_reason, resolve_ignored
from .slices import (
    CONSUMER,
    PRODUCER,
    ParamSlice,
    UnsupportedModelError,
    group_slices,
    grouped_conv_inputs,
    supported_types,
)

_ATTENTION = re.compile(
    r"(^|\.)(attn|attention|self_attn|self_attention)(\.|$)|(^|\.)(q|k|v|qkv|query|key|value|"
    r"q_proj|k_proj|v_proj|c_attn|in_proj)(\.|_weight|$)"
)


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
        block: Consecutive root channels bound into one structure (GroupNorm groups), 1 otherwise.
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

    def local_of(self, roots: torch.Tensor) -> torch.Tensor:
        """Structure index within this layer of each root channel."""
        return (roots // self.block) % self.size

    def roots_of(self, local: torch.Tensor) -> torch.Tensor:
        """Every root channel of the structures ``local`` (indices within this layer), sorted."""
        groups = torch.arange(self.channel_groups).view(-1, 1, 1) * self.size
        offsets = torch.arange(self.block).view(1, 1, -1)
        return ((groups + local.view(1, -1, 1)) * self.block + offsets).flatten().sort().values

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
        ignored_layers: Modules (or module names) whose output channels must never be pruned.
        ignore_classifier: Protect the model outputs: no group whose channels reach an output
            (tensor, tuple, dict or ``ModelOutput``) is prunable.
        round_to: Pruned counts per layer are multiples of this (``None``: any count).
        ignored_types: Module classes (or class names) kept whole, like ``ignored_layers``.
        verify: Run the empirical exactness check (:func:`~decayprune.structure.exactness.find_inexact`)
            and refuse groups whose compaction would change the outputs.
        tolerance: Relative output error the check accepts (float64).

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
        example_inputs: torch.Tensor | Sequence[torch.Tensor],
        *,
        ignored_layers: Iterable[nn.Module | str] = (),
        ignore_classifier: bool = True,
        round_to: int | None = None,
        ignored_types: Sequence[type[nn.Module] | str] = (),
        verify: bool | str = "auto",
        tolerance: float = 1e-6,
    ) -> None:
        if round_to is not None and round_to < 1:
            raise ValueError(f"round_to must be a positive integer or None, got {round_to!r}")
        if not tolerance > 0:
            raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
        self.model = model
        self.example_inputs = _as_tuple(example_inputs)
        self.round_to = round_to
        self.protect_outputs = ignore_classifier
        self.verify = verify
        self.tolerance = tolerance
        ignored = resolve_ignored(model, ignored_layers, ignored_types)
        self.ignored_layers = ignored
        self.frozen: list[FrozenGroup] = []
        recorder = OutputRecorder()
        was_training = model.training
        try:
            self.graph = tp.DependencyGraph().build_dependency(
                model,
                example_inputs=self.example_inputs,
                output_transform=recorder,
                customized_pruners=customized_pruners(model),
                verbose=False,
            )
        except Exception as exc:
            raise UnsupportedModelError(
                f"torch-pruning could not trace {type(model).__name__} ({type(exc).__name__}: {exc}); an op the "
                "dependency graph cannot follow (e.g. a channel shuffle); nothing can be pruned safely"
            ) from exc
        finally:
            model.train(was_training)  # torch-pruning's tracer calls model.eval() and leaves it so
        self._output_grad_fns = recorder.grad_fns
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.module_names = {m: n for n, m in model.named_modules()}
        self.layers: list[LayerGroup] = []
        self._build_layers()
        if verify not in (True, False, "auto"):
            raise ValueError(f"verify must be True, False or 'auto', got {verify!r}")
        candidates = (
            list(range(len(self.layers)))
            if verify is True
            else [i for i in range(len(self.layers)) if i in self._risky]
            if verify == "auto"
            else []
        )
        if candidates:
            found = find_inexact(model, self.example_inputs, [self.layers[i] for i in candidates], tolerance)
            bad = {candidates[i]: reason for i, reason in found.items()}
            for i in sorted(bad):
                layer = self.layers[i]
                reason = bad[i]
                if any(_ATTENTION.search(s.name) for s in layer.slices if s.role == PRODUCER):
                    reason = (
                        "attention projection: its channels are reshaped into heads, and decayprune does not "
                        f"prune whole heads yet; {reason}"
                    )
                self.frozen.append(FrozenGroup(layer.name, layer.num_channels, "inexact", reason))
            self._renumber([layer for i, layer in enumerate(self.layers) if i not in bad])
        self.num_structures = sum(layer.size for layer in self.layers)
        self.layer_of = (
            torch.cat([torch.full((layer.size,), layer.index, dtype=torch.long) for layer in self.layers])
            if self.layers
            else torch.zeros(0, dtype=torch.long)
        )
        self.pruned = torch.zeros(self.num_structures, dtype=torch.bool)
        self._zero_plan: list[tuple[torch.Tensor, int, torch.Tensor]] | None = None
        self.stale = False
        self.cost = CostModel(model, self.example_inputs, self)

    # ------------------------------------------------------------------ building
    @property
    def unsupported(self) -> list[FrozenGroup]:
        """The frozen groups that touch a layer or op decayprune cannot slice."""
        return [f for f in self.frozen if f.kind == "unsupported"]

    def _whole_params(self) -> dict[int, str]:
        """Parameters kept whole: of ignored modules, and of modules decayprune cannot slice that
        torch-pruning does not treat as unwrapped parameters (layer scales, tokens) either."""
        unwrapped = self._elementwise_unwrapped()
        types = supported_types()
        whole: dict[int, str] = {}
        ignored_ids = {id(m) for m in self.ignored_layers}
        for name, module in self.model.named_modules():
            if id(module) in ignored_ids:
                for p in module.parameters():
                    whole.setdefault(id(p), f"'{name}' ({type(module).__name__}) is kept whole (ignored)")
                continue
            if isinstance(module, types):
                continue
            for pname, p in module.named_parameters(recurse=False):
                if id(p) not in unwrapped:
                    whole.setdefault(
                        id(p), f"'{name}' ({type(module).__name__}) holds '{pname}', which decayprune cannot slice"
                    )
        return whole

    _ELEMENTWISE_USES = (
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Cat",
        "Expand",
        "Repeat",
        "View",
        "Reshape",
        "Unsqueeze",
        "Squeeze",
        "Permute",
        "Transpose",
        "Clone",
        "ToCopy",
    )

    def _elementwise_unwrapped(self) -> set[int]:
        """Unwrapped parameters (layer scales, class / position tokens) that are only added, multiplied
        or concatenated: torch-pruning slices them along their channel dim. A parameter used any
        other way (``F.linear(x, w)``) mixes channels the graph cannot follow and is kept whole."""
        trusted = set()
        for module, node in self.graph.module2node.items():
            if node.type != tp.ops.OPTYPE.PARAMETER:
                continue
            uses = [type(n.grad_fn).__name__ for n in node.outputs if n.grad_fn is not None]
            if uses and all(u.startswith(self._ELEMENTWISE_USES) for u in uses):
                trusted.add(id(module))
        return trusted

    def _freeze(self, root: nn.Module, channels: int | None, kind: str, reason: str) -> None:
        name = self.module_names.get(root, type(root).__name__)
        self.frozen.append(FrozenGroup(name, int(channels or 0), kind, reason))

    def _build_layers(self) -> None:
        first = 0
        whole = self._whole_params()
        self._risky: set[int] = set()
        ignored_ids = {id(m) for m in self.ignored_layers}
        roots = tuple(t for t in supported_types() if t.__name__ in ("Conv1d", "Conv2d", "Conv3d", "Linear", "Conv1D"))
        groups = self.graph.get_all_groups(
            ignored_layers=[m for m in self.ignored_layers if isinstance(m, roots)], root_module_types=roots
        )
        for group in groups:
            root = group[0].dep.target.module
            if id(root) in ignored_ids:
                continue
            pruner = self.graph.get_pruner_of_module(root)
            channels = pruner.get_out_channels(root)
            if channels is None or channels < 2:
                continue
            reason = output_reason(group, self.graph, self._output_grad_fns) if self.protect_outputs else None
            if reason is not None:
                self._freeze(root, channels, "output", reason)
                continue
            try:
                slices = group_slices(group, self.model, self.names)
            except UnsupportedModelError as exc:
                self._freeze(root, channels, "unsupported", str(exc))
                continue
            if not any(s.role == PRODUCER for s in slices):
                continue
            touched = next((whole[id(s.param)] for s in slices if id(s.param) in whole), None)
            if touched is not None:
                kind = "ignored" if "(ignored)" in touched else "unsupported"
                self._freeze(root, channels, kind, f"its channels reach {touched}")
                continue
            reason = static_reason(group, self.module_names)
            if reason is not None:
                self._freeze(root, channels, "norm", reason)
                continue
            channel_groups = self._channel_groups(group)
            block, reason = gn_block(group, channels)
            if reason is None and channel_groups > 1 and block > 1:
                reason = "a grouped convolution and a GroupNorm bind its channels in different patterns"
            if reason is None and channels % (channel_groups * block):
                reason = (
                    f"{channels} channels do not split into {channel_groups} conv groups of GroupNorm blocks of {block}"
                )
            if reason is not None:
                self._freeze(root, channels, "norm", reason)
                continue
            size = channels // (channel_groups * block)
            if size < 2:
                continue
            layer = LayerGroup(
                index=len(self.layers),
                name=self.module_names.get(root, type(root).__name__),
                root=root,
                num_channels=channels,
                channel_groups=channel_groups,
                first=first,
                size=size,
                slices=slices,
                block=block,
            )
            layer.structure_ids = [first + layer.local_of(s.roots) for s in slices]
            if risk_reason(group, slices):
                self._risky.add(layer.index)
            layer.grouped_inputs = [(w, first + layer.local_of(r)) for w, r in grouped_conv_inputs(group)]
            self.layers.append(layer)
            first += size

    def _renumber(self, layers: list[LayerGroup]) -> None:
        """Keep only ``layers``, with indices and structure ids renumbered from zero."""
        first = 0
        for index, layer in enumerate(layers):
            delta = first - layer.first
            layer.index, layer.first = index, first
            layer.structure_ids = [ids + delta for ids in layer.structure_ids]
            layer.grouped_inputs = [(w, ids + delta) for w, ids in layer.grouped_inputs]
            first += layer.size
        self.layers = layers

    def _channel_groups(self, group: tp.dependency.Group) -> int:
        """Channels bound together by grouped (non-depthwise) convolutions, as torch-pruning does."""
        count = 1
        for item in group.items:
            module = item.dep.target.module
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and 1 < module.groups < module.out_channels:
                count = max(count, module.groups)
        return count

    # ------------------------------------------------------------------ per-structure reduce / broadcast
    def _cache(self) -> dict:
        # Created on first use (not in the constructor): entries and flat plans per device and role.
        return self.__dict__.setdefault("_rw_cache", {})

    def _device(self) -> torch.device:
        for layer in self.layers:
            return layer.slices[0].param.device
        return torch.device("cpu")

    def _entries(self, role: str | None) -> list[SliceEntry]:
        """The slices of ``role`` merged per (parameter, dim), over every layer (cached)."""
        key = ("entries", role)
        cache = self._cache()
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
        device = self._device()
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
            view = tensor.detach().movedim(entry.dim, 0).reshape(tensor.shape[entry.dim], -1)
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
        device = self._device()
        padded = _pad(values.to(device, torch.float32), fill)
        out = []
        for entry in self._entries(role):
            shape = [1] * entry.param.dim()
            shape[entry.dim] = -1
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
        padded = _pad(factors.to(self._device(), torch.float32), 1.0)
        for plan in self.flat_plans(role):
            plan.mul_(plan.params, plan.gather(padded))

    def flat_plans(self, role: str | None = PRODUCER) -> list[FlatPlan]:
        """Element-level plans of the slices of ``role`` on the model's current device (cached).

        One plan per pass; a parameter sliced twice (e.g. a conv's rows and columns with
        ``role=None``) appears in two passes so no pass writes one tensor twice.
        """
        device = self._device()
        key = ("flat", role, device)
        cache = self._cache()
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
        factors = factors.to(self._device(), torch.float32)
        mask = self._layer_mask(layers, factors.device)
        self.scale_(factors if mask is None else torch.where(mask, factors, torch.ones_like(factors)))

    def slices_changed(self) -> None:
        """Forget cached plans after slices were added or removed (e.g. a channel multiplier).

        Clears the slice entries and flat plans too: a plan built before a multiplier was added
        would leave it out of every decay, keep-at-zero and norm (and keep a removed one in).
        """
        self._zero_plan = None
        self._cache().clear()

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
        self.__dict__["mask_version"] = self.mask_version + 1

    @property
    def mask_version(self) -> int:
        """Bumped by every :meth:`set_pruned` / :meth:`set_mask` (to rebuild derived device state)."""
        return self.__dict__.get("mask_version", 0)

    def keep_vector(self) -> torch.Tensor:
        """Float ``[S + 1]`` on the model's device: 0 for pruned structures, 1 otherwise.

        The extra last entry (1) is the slot of positions that belong to no structure. Rebuilt
        only when the mask changes.
        """
        device = self._device()
        key = ("keep", device)
        cache = self._cache()
        cached = cache.get(key)
        if cached is None or cached[0] != self.mask_version:
            keep = _pad((~self.pruned).to(torch.float32), 1.0).to(device)
            cache[key] = cached = (self.mask_version, keep)
        return cached[1]

    @torch.no_grad()
    def zero_pruned_(self, optimizer: torch.optim.Optimizer | None = None, grads: bool = True) -> None:
        """Hold pruned structures at exactly zero: weights, gradients and optimizer state."""
        if not self.pruned.any():
            return
        for plan in self.flat_plans(PRODUCER):
            if plan.use_row_ops():
                rows = plan.dead_rows(self.pruned, ("mask", self.mask_version))
                plan.zero_rows_(plan.params, rows)
                if grads:
                    plan.zero_rows_(plan.tensors("grad"), rows)
                if optimizer is not None:
                    plan.zero_rows_state_(optimizer, rows)
                continue
            factors = plan.gather(self.keep_vector(), "keep", ("mask", self.mask_version))
            plan.mul_(plan.params, factors)
            if grads:
                plan.mul_(plan.tensors("grad"), factors)
            if optimizer is not None:
                plan.mul_state_(optimizer, factors)

    @torch.no_grad()
    def zero_grads_of_pruned_(self) -> None:
        """Zero only the gradients of pruned structures (call after backward)."""
        if not self.pruned.any():
            return
        for plan in self.flat_plans(PRODUCER):
            if plan.use_row_ops():
                plan.zero_rows_(plan.tensors("grad"), plan.dead_rows(self.pruned, ("mask", self.mask_version)))
            else:
                plan.mul_(plan.tensors("grad"), plan.gather(self.keep_vector(), "keep", ("mask", self.mask_version)))

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


# ---------------------------------------------------------------------------- element-level plans


def _pad(values: torch.Tensor, fill: float) -> torch.Tensor:
    """``values`` with one extra last entry ``fill`` (the slot of positions outside any structure)."""
    return torch.cat([values, torch.full((1,), fill, dtype=values.dtype, device=values.device)])


@dataclass
class SliceEntry:
    """All slices of one role on one (parameter, dim), merged over layer groups.

    ``ids[i]`` is the structure at position ``i`` along ``dim``, or ``S`` (the padding slot)
    where the parameter has no structure of this role.
    """

    param: torch.Tensor
    dim: int
    ids: torch.Tensor
    _on: dict = field(default_factory=dict)

    def ids_on(self, device: torch.device) -> torch.Tensor:
        """``ids`` on ``device`` (copied once)."""
        if device not in self._on:
            self._on[device] = self.ids.to(device)
        return self._on[device]


def merge_slices(
    slices: Iterable[tuple[LayerGroup, ParamSlice, torch.Tensor]], num_structures: int
) -> list[SliceEntry]:
    """Merge slices per (parameter, dim); a position claimed twice opens a second entry."""
    entries: dict[tuple[int, int], list[SliceEntry]] = {}
    out: list[SliceEntry] = []
    for _layer, s, ids in slices:
        candidates = entries.setdefault((id(s.param), s.dim), [])
        entry = next((e for e in candidates if bool((e.ids[s.positions] == num_structures).all())), None)
        if entry is None:
            entry = SliceEntry(s.param, s.dim, torch.full((s.param.shape[s.dim],), num_structures, dtype=torch.long))
            candidates.append(entry)
            out.append(entry)
        entry.ids[s.positions] = ids
    return out


def _is_dense(t: torch.Tensor) -> bool:
    """True when ``t`` covers its memory without gaps or overlaps (any dim order)."""
    expected = 1
    for size, stride in sorted(((sz, st) for sz, st in zip(t.shape, t.stride()) if sz != 1), key=lambda p: p[1]):
        if stride != expected:
            return False
        expected *= size
    return True


class FlatPlan:
    """Every element of a list of parameters mapped to a structure id, in memory order.

    Per-structure values reach every element with one gather into a persistent buffer whose
    views (one per parameter, same shape and strides) feed one ``torch._foreach_mul_``; per-
    structure sums of squares are one ``cat``, one ``square_`` and one ``index_add_``. So a DPM
    pass costs a bounded number of kernels whatever the number of parameters, and no host sync.
    On the CPU, where launches are cheap and memory bandwidth is not, sums of squares are one
    per-row norm per parameter instead (no model-sized copy), and keep-at-zero can fill only the
    rows of pruned structures (:meth:`dead_rows`, :meth:`zero_rows_`).

    Attributes:
        params: The parameters (each once).
        index: ``[E]`` structure id of every element (``S`` outside any structure), on the device
            (int32: 4 bytes per parameter element, plus a float32 buffer once values are gathered).
    """

    cpu_row_ops = True
    """On the CPU, per-row ops per parameter instead of model-sized element passes (False: the
    accelerator's fused path everywhere)."""

    def __init__(self, entries: list[SliceEntry], num_structures: int, device: torch.device) -> None:
        self.params = [e.param for e in entries]
        self.num_structures = num_structures
        self._rows = [(tuple(d for d in range(e.param.dim()) if d != e.dim), e.dim) for e in entries]
        self._entry_ids = [e.ids for e in entries]
        self.row_index = (
            torch.cat([e.ids_on(device) for e in entries])
            if entries
            else torch.zeros(0, dtype=torch.long, device=device)
        )
        parts = []
        for e in entries:
            if not _is_dense(e.param):
                raise ValueError(
                    f"a {tuple(e.param.shape)} parameter with strides {e.param.stride()} is not dense; "
                    "decayprune needs dense (contiguous or channels-last) parameters"
                )
            shape = [1] * e.param.dim()
            shape[e.dim] = -1
            holder = torch.empty_like(e.param, dtype=self._index_dtype(), device=device)  # the parameter's strides
            holder.copy_(e.ids_on(device).view(shape).expand(e.param.shape))
            parts.append(holder.as_strided((holder.numel(),), (1,)))
        self.numels = [p.numel() for p in self.params]
        self._layout = self._current_layout()
        self.index = torch.cat(parts) if parts else torch.zeros(0, dtype=self._index_dtype(), device=device)
        self._buffers: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = {}  # allocated on first gather
        self._versions: dict[str, object] = {}
        with torch.no_grad():
            self._flat_params = [p.detach().as_strided((p.numel(),), (1,)) for p in self.params]

    def _current_layout(self) -> list[tuple[tuple[int, ...], int]]:
        return [(p.stride(), p.data_ptr()) for p in self.params]

    def _index_dtype(self) -> torch.dtype:
        return torch.int32 if self.num_structures < 2**31 - 1 else torch.long

    def matches_layout(self) -> bool:
        """False once a parameter changed its strides or storage (``index`` and views are then stale)."""
        return self._current_layout() == self._layout

    def _as_params(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [chunk.as_strided(p.shape, p.stride()) for chunk, p in zip(flat.split(self.numels), self.params)]

    def tensors(self, source: str = "weight") -> list[torch.Tensor | None]:
        """The parameters (``"weight"``) or their gradients (``"grad"``, None where absent)."""
        if source == "weight":
            return list(self.params)
        return [p.grad for p in self.params]

    def gather(self, padded: torch.Tensor, slot: str = "values", version: object = None) -> list[torch.Tensor]:
        """Views, shaped like the parameters, of ``padded[structure of each element]``.

        ``padded`` has ``S + 1`` entries. The views share the buffer of ``slot``, overwritten by
        the next gather into it; with a ``version`` equal to the last one the gather is skipped
        (the caller vouches that ``padded`` did not change).
        """
        if slot not in self._buffers:
            buffer = torch.empty(self.index.numel(), device=self.index.device)
            self._buffers[slot] = (buffer, self._as_params(buffer))
        buffer, views = self._buffers[slot]
        if version is None or self._versions.get(slot) != version:
            torch.index_select(padded.to(buffer.dtype), 0, self.index, out=buffer)
            self._versions[slot] = version
        return views

    @staticmethod
    @torch.no_grad()
    def mul_(tensors: Sequence[torch.Tensor | None], factors: list[torch.Tensor]) -> None:
        """``tensors[i] *= factors[i]`` in one foreach call (``None`` entries are skipped)."""
        pairs = [(t, f) for t, f in zip(tensors, factors) if t is not None]
        if pairs:
            torch._foreach_mul_([t for t, _ in pairs], [f for _, f in pairs])

    def mul_state_(self, optimizer: torch.optim.Optimizer, factors: list[torch.Tensor]) -> None:
        """Multiply the optimizer's per-element state (momentum, Adam moments) of each parameter."""
        states, views = [], []
        for p, f in zip(self.params, factors):
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    states.append(value)
                    views.append(f)
        self.mul_(states, views)

    def _flat(self, t: torch.Tensor | None, p: torch.Tensor) -> torch.Tensor:
        if t is None:
            return torch.zeros(p.numel(), device=p.device, dtype=p.dtype)
        if t.stride() != p.stride():
            t = torch.empty_like(p).copy_(t)
        return t.as_strided((t.numel(),), (1,))

    @torch.no_grad()
    def add_sumsq_(self, out: torch.Tensor, source: str = "weight") -> torch.Tensor:
        """``out[s] +=`` the sum of squares of structure s's elements of the parameters
        (``source="weight"``) or their gradients (``"grad"``); ``out`` has ``S + 1`` entries."""
        if not self.params:
            return out
        if self.use_row_ops():
            return self._add_row_sumsq_(out, source)
        if source == "weight":
            parts = self._flat_params
        else:
            parts = [self._flat(p.grad, p) for p in self.params]
        flat = torch.cat(parts).float()
        return out.index_add_(0, self.index, flat.square_())

    def use_row_ops(self) -> bool:
        """True on the CPU (see :attr:`cpu_row_ops`)."""
        return self.cpu_row_ops and self.index.device.type == "cpu"

    def dead_rows(self, pruned: torch.Tensor, version: object) -> list[tuple[int, int, torch.Tensor]]:
        """``(parameter number, dim, positions)`` of the rows of ``pruned`` structures (cached per version)."""
        if self._versions.get("dead") != version:
            dead = torch.cat([pruned.bool().cpu(), torch.zeros(1, dtype=torch.bool)])
            rows = []
            for i, (entry_ids, (_others, dim)) in enumerate(zip(self._entry_ids, self._rows)):
                pos = dead[entry_ids].nonzero().flatten()
                if pos.numel():
                    rows.append((i, dim, pos.to(self.index.device)))
            self._dead_rows, self._versions["dead"] = rows, version
        return self._dead_rows

    @staticmethod
    @torch.no_grad()
    def zero_rows_(tensors: Sequence[torch.Tensor | None], rows: list[tuple[int, int, torch.Tensor]]) -> None:
        """Fill the given rows of ``tensors`` (aligned with :attr:`params`) with exact zeros."""
        for i, dim, pos in rows:
            tensor = tensors[i]
            if tensor is not None:
                tensor.index_fill_(dim, pos, 0)

    def zero_rows_state_(self, optimizer: torch.optim.Optimizer, rows: list[tuple[int, int, torch.Tensor]]) -> None:
        """:meth:`zero_rows_` on the optimizer's per-element state of each parameter."""
        for i, dim, pos in rows:
            p = self.params[i]
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    value.index_fill_(dim, pos, 0)

    def _add_row_sumsq_(self, out: torch.Tensor, source: str) -> torch.Tensor:
        parts = []
        for p, (others, dim) in zip(self.params, self._rows):
            t = p if source == "weight" else p.grad
            if t is None:
                parts.append(torch.zeros(p.shape[dim], device=p.device))
            elif not others:
                parts.append(t.detach().float().abs())
            else:
                parts.append(torch.linalg.vector_norm(t.detach(), dim=others, dtype=torch.float32))
        return out.index_add_(0, self.row_index, torch.cat(parts).square_())


def build_flat_plans(entries: list[SliceEntry], num_structures: int, device: torch.device) -> list[FlatPlan]:
    """Split ``entries`` into passes where each parameter appears once, one :class:`FlatPlan` each."""
    passes: list[list[SliceEntry]] = []
    for entry in entries:
        target = next((p for p in passes if all(e.param is not entry.param for e in p)), None)
        if target is None:
            passes.append(target := [])
        target.append(entry)
    return [FlatPlan(p, num_structures, device) for p in passes]


__all__ = [
    "CONSUMER",
    "PRODUCER",
    "FlatPlan",
    "FrozenGroup",
    "LayerGroup",
    "SliceEntry",
    "StructureSet",
    "UnsupportedModelError",
    "find_classifier",
]
