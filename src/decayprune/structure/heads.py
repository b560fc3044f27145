"""Attention heads as units: find the heads of each attention layer, and remove whole heads.

:func:`find_attention` recognises the attention layouts of the usual transformers by their
projections (no per-model settings): separate ``q_proj``/``k_proj``/``v_proj`` with ``o_proj``
(LLaMA, Qwen2, Mistral, ViT; or ``out_proj``: a pruned ``nn.MultiheadAttention``),
``query``/``key``/``value`` with the sibling ``output.dense`` (BERT, RoBERTa, ELECTRA),
and GPT-2's fused ``c_attn`` with ``c_proj`` (``Conv1D``). The module must say its head size
(``head_dim`` or ``attention_head_size``). A :class:`HeadGroup` is a
:class:`~decayprune.structure.groups.ChannelGroup` whose unit is one KV head with the query heads
that share it (grouped-query attention; one head each otherwise): its producers are the q/k/v
rows (and biases), its consumers the output projection's columns, so DPM's decay, SR, criteria
and the cost model treat heads exactly like channels. :meth:`HeadGroup.remove` slices the
projections and keeps the module's head counts (``num_heads``, ``num_key_value_heads``,
``all_head_size``, ``split_size`` ...) consistent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .groups import ChannelGroup
from .hf_layers import conv1d_type
from .slices import CONSUMER, PRODUCER, ParamSlice

__all__ = ["HEAD_ATTRS", "HEAD_UNITS", "HeadGroup", "HeadLayout", "find_attention", "head_counts"]

HEAD_ATTRS = (
    "num_heads",
    "num_attention_heads",
    "num_key_value_heads",
    "num_key_value_groups",
    "all_head_size",
    "split_size",
)
HEAD_UNITS = ("kv", "query")
"""What one head unit is: ``"kv"`` a KV head with the query heads sharing it; ``"query"`` one query
head of every KV group (the same slot in each, so every group keeps the same number; the KV heads
stay). Without grouped-query attention both are one head."""
"""Attributes of an attention module that count its heads (updated by :meth:`HeadGroup.remove`)."""


@dataclass(frozen=True)
class HeadLayout:
    """Where one attention layer keeps its heads.

    Attributes:
        attention: Qualified name of the attention module (its head counts are updated).
        parts: ``(projection module name, "q" | "k" | "v", first output row)`` of each projection.
        output: Name of the output projection (its input columns are the concatenated heads).
        head_dim: Channels per head.
        num_heads: Query heads.
        num_kv_heads: Key / value heads (``num_heads`` without grouped-query attention).
    """

    attention: str
    parts: tuple[tuple[str, str, int], ...]
    output: str
    head_dim: int
    num_heads: int
    num_kv_heads: int

    @property
    def modules(self) -> tuple[str, ...]:
        """The names of every projection of this layout (output last)."""
        return tuple(dict.fromkeys(p[0] for p in self.parts)) + (self.output,)


def _is_conv1d(module: nn.Module) -> bool:
    conv1d = conv1d_type()
    return conv1d is not None and isinstance(module, conv1d)


def _out_dim(module: nn.Module) -> int:
    """The weight dimension holding a projection's outputs (Conv1D stores ``[in, out]``)."""
    return 1 if _is_conv1d(module) else 0


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def _outputs(module: nn.Module) -> int:
    return int(_weight(module).shape[_out_dim(module)])


def _layout(name: str, module: nn.Module, modules: dict[str, nn.Module]) -> HeadLayout | None:
    head_dim = getattr(module, "head_dim", None) or getattr(module, "attention_head_size", None)
    if not isinstance(head_dim, int) or head_dim < 1:
        return None
    prefix = f"{name}." if name else ""
    parent = name.rsplit(".", 1)[0] + "." if "." in name else ""
    kids = dict(module.named_children())
    if all(k in kids for k in ("q_proj", "k_proj", "v_proj")):
        names = ("q_proj", "k_proj", "v_proj")
        output = next((f"{prefix}{o}" for o in ("o_proj", "out_proj") if o in kids), f"{parent}output.dense")
    elif all(k in kids for k in ("query", "key", "value")):
        names = ("query", "key", "value")
        output = f"{parent}output.dense"
    elif "c_attn" in kids and "c_proj" in kids and _is_conv1d(kids["c_attn"]) and "q_attn" not in kids:
        width = _outputs(kids["c_attn"]) // 3
        parts = tuple((f"{prefix}c_attn", kind, i * width) for i, kind in enumerate("qkv"))
        return _checked(name, parts, f"{prefix}c_proj", head_dim, width, width, modules)
    else:
        return None
    if not all(isinstance(kids[k], nn.Linear) for k in names):
        return None
    q, k, v = (kids[n] for n in names)
    if _outputs(k) != _outputs(v):
        return None
    parts = tuple((f"{prefix}{n}", kind, 0) for n, kind in zip(names, "qkv", strict=True))
    return _checked(name, parts, output, head_dim, _outputs(q), _outputs(k), modules)


def _checked(
    name: str,
    parts: tuple[tuple[str, str, int], ...],
    output: str,
    head_dim: int,
    q_width: int,
    kv_width: int,
    modules: dict[str, nn.Module],
) -> HeadLayout | None:
    out = modules.get(output)
    if out is None or not (isinstance(out, nn.Linear) or _is_conv1d(out)):
        return None
    in_dim = 0 if _is_conv1d(out) else 1
    if int(_weight(out).shape[in_dim]) != q_width or q_width % head_dim or kv_width % head_dim:
        return None
    heads, kv_heads = q_width // head_dim, kv_width // head_dim
    if kv_heads < 1 or heads % kv_heads:
        return None
    return HeadLayout(name, parts, output, head_dim, heads, kv_heads)


def find_attention(model: nn.Module) -> list[HeadLayout]:
    """The attention layers of ``model`` whose heads decayprune can remove whole.

    Example:
        >>> import transformers
        >>> cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        ...     num_attention_heads=4, num_key_value_heads=2, vocab_size=16)
        >>> found = find_attention(transformers.LlamaModel(cfg))
        >>> [(h.attention, h.num_heads, h.num_kv_heads, h.head_dim) for h in found]
        [('layers.0.self_attn', 4, 2, 8)]
    """
    modules = dict(model.named_modules())
    found = [_layout(name, m, modules) for name, m in modules.items()]
    return [h for h in found if h is not None]


@dataclass
class HeadGroup(ChannelGroup):
    """A channel group whose units are attention heads (a KV head with its query heads).

    The root is the query projection and its channels are the query channels. With
    ``units="kv"``, ``block = heads_per_unit * head_dim`` root channels make one unit and key /
    value rows map to the unit of their KV head. With ``units="query"`` a unit is query-head slot
    ``j`` of every KV group (``block = head_dim``, one channel group per KV head); its producers
    are the query rows and the output projection's columns (the head's contribution is zero even
    though its shared values are not), and the KV heads stay.
    """

    layout: HeadLayout | None = None
    heads_per_unit: int = 1
    units: str = "kv"

    def activation_sites(self) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
        """The query projection's rows (the root), never the output projection's columns."""
        return [site for site in super().activation_sites() if site[0] is self.root]

    @torch.no_grad()
    def remove(self, model: nn.Module, local: torch.Tensor) -> dict[str, list[tuple[int, torch.Tensor]]]:
        """Remove the units ``local`` (indices within this group) from ``model``; returns the removed
        positions of each parameter, ``{name: [(dim, positions)]}`` (for the optimizer state)."""
        layout = self.layout
        assert layout is not None
        dead = torch.zeros(self.size, dtype=torch.bool)
        dead[local] = True
        cut: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for sl, ids in zip(self.slices, self.structure_ids, strict=True):
            gone = sl.positions[dead[self.local(ids)]]
            cut.setdefault(sl.name, []).append((sl.dim, gone))
        for pname, cuts in cut.items():
            owner_name, attr = pname.rsplit(".", 1)
            owner = model.get_submodule(owner_name)
            param = getattr(owner, attr)
            keep = torch.ones(param.shape[cuts[0][0]], dtype=torch.bool)
            for _dim, gone in cuts:
                keep[gone] = False
            setattr(
                owner, attr, nn.Parameter(param.data[(slice(None),) * cuts[0][0] + (keep.to(param.device),)].clone())
            )
        removed = int(dead.sum())
        for name in dict.fromkeys(p[0] for p in layout.parts):
            _sync_features(model.get_submodule(name))
        _sync_features(model.get_submodule(layout.output))
        heads = self.num_channels // layout.head_dim - removed * self.heads_per_unit
        kv_heads = self.size - removed if self.units == "kv" else layout.num_kv_heads
        attention = model.get_submodule(layout.attention)
        _set_counts(attention, heads, kv_heads, layout.head_dim)
        keep_heads = getattr(attention, "keep_heads", None)  # PrunedMultiheadAttention: its kept heads
        if callable(keep_heads) and self.units == "kv" and self.heads_per_unit == 1:
            keep_heads(~dead)
        return cut


def _sync_features(module: nn.Module) -> None:
    """Linear / Conv1D size attributes from the (new) weight shape."""
    if _is_conv1d(module):
        nx, nf = _weight(module).shape
        setattr(module, "nx", int(nx))  # noqa: B010 (Conv1D is typed as a plain module here)
        setattr(module, "nf", int(nf))  # noqa: B010
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = (int(s) for s in module.weight.shape)


def _set_counts(module: nn.Module, heads: int, kv_heads: int, head_dim: int) -> None:
    values = {
        "num_heads": heads,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "num_key_value_groups": heads // kv_heads,
        "all_head_size": heads * head_dim,
        "split_size": heads * head_dim,
    }
    for attr, value in values.items():
        if isinstance(getattr(module, attr, None), int):
            setattr(module, attr, value)


def head_counts(model: nn.Module) -> list[tuple[str, int, int]]:
    """``(attention module, query heads, KV heads)`` of every attention layer found in ``model``."""
    return [(h.attention, h.num_heads, h.num_kv_heads) for h in find_attention(model)]


def head_group(
    layout: HeadLayout, model: nn.Module, names: dict[int, str], index: int, first: int, units: str = "kv"
) -> HeadGroup | None:
    """The :class:`HeadGroup` of ``layout`` (None with fewer than two units); ``units``: see :data:`HEAD_UNITS`."""
    if units not in HEAD_UNITS:
        raise ValueError(f"head units must be one of {HEAD_UNITS}, got {units!r}")
    d, n_rep = layout.head_dim, layout.num_heads // layout.num_kv_heads
    if units == "query" and n_rep > 1:
        return _query_group(layout, model, names, index, first)
    if layout.num_kv_heads < 2:
        return None
    block = n_rep * d
    q_name = layout.parts[0][0]
    root = model.get_submodule(q_name)
    group = HeadGroup(
        index=index,
        name=q_name,
        root=root,
        num_channels=layout.num_heads * d,
        channel_groups=1,
        first=first,
        size=layout.num_kv_heads,
        block=block,
        layout=layout,
        heads_per_unit=n_rep,
    )
    for module_name, kind, offset in layout.parts:
        module = model.get_submodule(module_name)
        width = layout.num_heads * d if kind == "q" else layout.num_kv_heads * d
        channel = torch.arange(width)
        # the q-layout root channel of each row: KV head j, offset e -> j * block + e
        roots = channel if kind == "q" else (channel // d) * block + channel % d
        rows = channel + offset
        group.add_slice(
            ParamSlice(names[id(module.weight)], _weight(module), _out_dim(module), rows, roots, PRODUCER, module),
            group.unit_ids(roots),
        )
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor):
            group.add_slice(ParamSlice(names[id(bias)], bias, 0, rows, roots, PRODUCER, module), group.unit_ids(roots))
    out = model.get_submodule(layout.output)
    cols = torch.arange(layout.num_heads * d)
    in_dim = 0 if _is_conv1d(out) else 1
    group.add_slice(
        ParamSlice(names[id(out.weight)], _weight(out), in_dim, cols, cols, CONSUMER, out), group.unit_ids(cols)
    )
    return group


def _query_group(layout: HeadLayout, model: nn.Module, names: dict[int, str], index: int, first: int) -> HeadGroup:
    """Units = query-head slots of every KV group: query rows and output columns, KV heads kept."""
    d = layout.head_dim
    q_name, _kind, offset = layout.parts[0]
    q = model.get_submodule(q_name)
    group = HeadGroup(
        index=index,
        name=q_name,
        root=q,
        num_channels=layout.num_heads * d,
        channel_groups=layout.num_kv_heads,
        first=first,
        size=layout.num_heads // layout.num_kv_heads,
        block=d,
        layout=layout,
        heads_per_unit=layout.num_kv_heads,
        units="query",
    )
    channel = torch.arange(layout.num_heads * d)
    ids = group.unit_ids(channel)
    group.add_slice(
        ParamSlice(names[id(q.weight)], _weight(q), _out_dim(q), channel + offset, channel, PRODUCER, q), ids
    )
    bias = getattr(q, "bias", None)
    if isinstance(bias, torch.Tensor):
        group.add_slice(ParamSlice(names[id(bias)], bias, 0, channel + offset, channel, PRODUCER, q), ids)
    out = model.get_submodule(layout.output)
    in_dim = 0 if _is_conv1d(out) else 1
    group.add_slice(ParamSlice(names[id(out.weight)], _weight(out), in_dim, channel, channel, PRODUCER, out), ids)
    return group
