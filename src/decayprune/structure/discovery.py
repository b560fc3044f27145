"""Discovery: trace a model with torch-pruning and turn its dependency groups into channel groups.

:func:`discover` returns the prunable :class:`~decayprune.structure.groups.ChannelGroup` s, numbered
from zero, and the :class:`~decayprune.structure.groups.FrozenGroup` s that are never offered,
each with its reason (reaches an output, touches an ignored or unsupported module, a norm
that would make masked and compacted models differ, failed the empirical exactness check).
torch-pruning itself is reached only through :mod:`decayprune.structure.graph`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..measure.inputs import ExampleInputs, call_model
from .exactness import find_inexact, gn_block, risk_reason, static_reason
from .graph import OPTYPE, DependencyGraph, Group, out_channels, trace
from .groups import ChannelGroup, FrozenGroup
from .heads import HEAD_UNITS, HeadGroup, find_attention, head_group
from .hf_layers import customized_pruners
from .mha import mha_head_group, mha_refusal
from .outputs import OutputRecorder, output_reason, resolve_ignored
from .slices import PRODUCER, UnsupportedModelError, group_slices, grouped_conv_inputs, supported_types

__all__ = ["Discovery", "discover", "find_classifier"]

_ATTENTION = re.compile(
    r"(^|\.)(attn|attention|self_attn|self_attention)(\.|$)|(^|\.)(q|k|v|qkv|query|key|value|"
    r"q_proj|k_proj|v_proj|c_attn|in_proj)(\.|_weight|$)"
)


def find_classifier(model: nn.Module, example_inputs: Any) -> nn.Module | None:
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
            output = call_model(model, example_inputs)
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


@dataclass
class Discovery:
    """What :func:`discover` found.

    Attributes:
        graph: torch-pruning's dependency graph of the model (used again by compaction).
        layers: The prunable channel groups, with structure ids numbered from zero.
        frozen: The groups never offered, with the reason.
        names: ``id(parameter) -> qualified name``.
        ignored_layers: The modules kept whole.
    """

    graph: DependencyGraph
    layers: list[ChannelGroup]
    frozen: list[FrozenGroup]
    names: dict[int, str]
    ignored_layers: list[nn.Module]


def discover(
    model: nn.Module,
    example_inputs: ExampleInputs,
    *,
    ignored_layers: Iterable[nn.Module | str] = (),
    ignored_types: Sequence[type[nn.Module] | str] = (),
    protect_outputs: bool = True,
    verify: bool | str = "auto",
    tolerance: float = 1e-6,
    head_units: str = "kv",
) -> Discovery:
    """Trace ``model`` and return its prunable channel groups and the frozen ones.

    Args:
        model: The network (traced once; its train/eval mode is left as it was).
        example_inputs: A tuple of positional inputs, or a dict of keyword inputs, for tracing (batch 1 is enough).
        ignored_layers: Modules (or names) whose output channels must never be pruned.
        ignored_types: Module classes (or class names) kept whole.
        protect_outputs: Freeze every group whose channels reach a model output.
        verify: ``True``: check every group empirically; ``"auto"``: the risky ones; ``False``: none.
        tolerance: Relative output error the empirical check accepts (float64).
        head_units: What one attention-head unit is, ``"kv"`` or ``"query"`` (see ``heads.HEAD_UNITS``).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> found = discover(net, (torch.randn(1, 4),))
        >>> [g.name for g in found.layers], [(f.layer, f.kind) for f in found.frozen]
        (['0'], [('2', 'output')])
    """
    if verify not in (True, False, "auto"):
        raise ValueError(f"verify must be True, False or 'auto', got {verify!r}")
    if head_units not in HEAD_UNITS:
        raise ValueError(f"head_units must be one of {HEAD_UNITS}, got {head_units!r}")
    run = _Discoverer(
        model, example_inputs, ignored_layers, ignored_types, protect_outputs, verify, tolerance, head_units
    )
    return Discovery(run.graph, run.layers, run.frozen, run.names, run.ignored_layers)


class _Discoverer:
    """One discovery run (its state lives only until :func:`discover` returns)."""

    def __init__(
        self,
        model: nn.Module,
        example_inputs: ExampleInputs,
        ignored_layers: Iterable[nn.Module | str],
        ignored_types: Sequence[type[nn.Module] | str],
        protect_outputs: bool,
        verify: bool | str,
        tolerance: float,
        head_units: str = "kv",
    ) -> None:
        self.model = model
        self.head_units = head_units
        self.example_inputs = example_inputs
        self.protect_outputs = protect_outputs
        ignored = resolve_ignored(model, ignored_layers, ignored_types)
        self.ignored_layers = ignored
        self.frozen: list[FrozenGroup] = []
        recorder = OutputRecorder()
        try:
            self.graph = trace(
                model, self.example_inputs, output_transform=recorder, customized_pruners=customized_pruners(model)
            )
        except Exception as exc:
            raise UnsupportedModelError(
                f"torch-pruning could not trace {type(model).__name__} ({type(exc).__name__}: {exc}); an op the "
                "dependency graph cannot follow (e.g. a channel shuffle); nothing can be pruned safely"
            ) from exc
        self._output_grad_fns = recorder.grad_fns
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.module_names = {m: n for n, m in model.named_modules()}
        self.layers: list[ChannelGroup] = []
        self._build_layers()
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
                if _ATTENTION.search(layer.name) and not isinstance(layer, HeadGroup):
                    reason = (
                        "attention projection: its channels are reshaped into heads, and decayprune does not "
                        f"prune whole heads yet; {reason}"
                    )
                self.frozen.append(FrozenGroup(layer.name, layer.num_channels, "inexact", reason))
            self._renumber([layer for i, layer in enumerate(self.layers) if i not in bad])

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
            if node.type != OPTYPE.PARAMETER:
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
        layouts = [h for h in find_attention(self.model) if self._heads_allowed(h.modules)]
        # q/k/v projections are pruned as whole heads: as torch-pruning roots their channels would only
        # be refused (reshaped into heads), and rotary embeddings make their index propagation explode
        projections = {m for h in layouts for m, _kind, _offset in h.parts}
        heads_only = [m for n, m in self.model.named_modules() if n in projections]
        groups = self.graph.get_all_groups(
            ignored_layers=[m for m in self.ignored_layers if isinstance(m, roots)] + heads_only,
            root_module_types=roots,
        )
        for group in groups:
            root = group[0].dep.target.module
            if id(root) in ignored_ids:
                continue
            channels = out_channels(self.graph, root)
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
            layer = ChannelGroup(
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
            layer.structure_ids = [layer.unit_ids(s.roots) for s in slices]
            if risk_reason(group, slices):
                self._risky.add(layer.index)
            layer.grouped_inputs = [(w, layer.unit_ids(r)) for w, r in grouped_conv_inputs(group)]
            self.layers.append(layer)
            first += size
        for layout in layouts:
            heads = head_group(layout, self.model, self.names, len(self.layers), first, self.head_units)
            if heads is None:
                continue
            touched = next((whole[id(s.param)] for s in heads.slices if id(s.param) in whole), None)
            if touched is not None:
                self._freeze(heads.root, heads.num_channels, "unsupported", f"its heads reach {touched}")
                continue
            self._risky.add(heads.index)
            self.layers.append(heads)
            first += heads.size
        self._add_mha_heads(first, whole)

    def _add_mha_heads(self, first: int, whole: dict[int, str]) -> None:
        """The heads of every ``nn.MultiheadAttention`` (its own packed parameters are sliced per head)."""
        ignored = {id(m) for m in self.ignored_layers}
        for name, module in self.model.named_modules():
            if not isinstance(module, nn.MultiheadAttention) or id(module) in ignored:
                continue
            if id(module.out_proj) in ignored:
                continue
            reason = mha_refusal(module)
            if reason is not None:
                self._freeze(module, module.embed_dim, "unsupported", reason)
                continue
            heads = mha_head_group(name, module, self.names, len(self.layers), first)
            if heads is None:
                continue
            own = {id(p) for p in module.parameters(recurse=False)}
            touched = next(
                (whole[id(s.param)] for s in heads.slices if id(s.param) in whole and id(s.param) not in own), None
            )
            if touched is not None:
                self._freeze(module, heads.num_channels, "unsupported", f"its heads reach {touched}")
                continue
            self._risky.add(heads.index)
            self.layers.append(heads)
            first += heads.size

    def _heads_allowed(self, names: Iterable[str]) -> bool:
        """False when one of an attention layer's projections is kept whole (ignored)."""
        ignored = {id(m) for m in self.ignored_layers}
        modules = dict(self.model.named_modules())
        return not any(id(modules[n]) in ignored for n in names)

    def _renumber(self, layers: list[ChannelGroup]) -> None:
        """Keep only ``layers``, with indices and structure ids renumbered from zero."""
        first = 0
        for index, layer in enumerate(layers):
            delta = first - layer.first
            layer.index, layer.first = index, first
            layer.structure_ids = [ids + delta for ids in layer.structure_ids]
            layer.grouped_inputs = [(w, ids + delta) for w, ids in layer.grouped_inputs]
            first += layer.size
        self.layers = layers

    def _channel_groups(self, group: Group) -> int:
        """Channels bound together by grouped (non-depthwise) convolutions, as torch-pruning does."""
        count = 1
        for item in group.items:
            module = item.dep.target.module
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and 1 < module.groups < module.out_channels:
                count = max(count, module.groups)
        return count
