"""The heads of ``torch.nn.MultiheadAttention`` as units, and their removal.

A head of an ``nn.MultiheadAttention`` with one packed ``in_proj_weight`` (``kdim == vdim ==
embed_dim``) is its ``head_dim`` query, key and value rows of ``in_proj_weight`` / ``in_proj_bias``
(producers) and its ``head_dim`` input columns of ``out_proj`` (consumers): an :class:`MhaHeadGroup`,
so masking, DPM's decay / SR, weight criteria and the cost model treat it as the heads of a
transformers model. Removing heads replaces the module with a
:class:`~decayprune.structure.mha_module.PrunedMultiheadAttention` (same head size, fewer heads),
which computes what the masked module did. ``add_bias_kv``, ``add_zero_attn`` and separate
key / value sizes are refused (:func:`mha_refusal`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .heads import HeadGroup, HeadLayout
from .mha_module import PrunedMultiheadAttention
from .slices import CONSUMER, PRODUCER, ParamSlice

__all__ = ["MhaHeadGroup", "PrunedMultiheadAttention", "compact_mha", "mha_head_group", "mha_refusal"]


def mha_refusal(module: nn.MultiheadAttention) -> str | None:
    """Why the heads of ``module`` cannot be units (None when they can)."""
    if not module._qkv_same_embed_dim or module.in_proj_weight is None:
        return (
            f"nn.MultiheadAttention with kdim={module.kdim} / vdim={module.vdim} != embed_dim={module.embed_dim} "
            "(separate q/k/v weights): decayprune prunes heads of the packed in_proj_weight only"
        )
    if module.bias_k is not None or module.bias_v is not None:
        return "nn.MultiheadAttention with add_bias_kv=True: the learned key/value bias rows are not sliced per head"
    if module.add_zero_attn:
        return "nn.MultiheadAttention with add_zero_attn=True is not supported for head pruning"
    return None


@dataclass
class MhaHeadGroup(HeadGroup):
    """The heads of one ``nn.MultiheadAttention`` (root: the attention module itself).

    The query channels are computed inside the module's functional forward, so no submodule's
    output holds them: :meth:`activation_sites` is empty (activation-based criteria see no
    activation of these heads; weight and gradient criteria do).
    """

    def activation_sites(self) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
        return []

    @torch.no_grad()
    def remove(self, model: nn.Module, local: torch.Tensor) -> dict[str, list[tuple[int, torch.Tensor]]]:
        """Replace the module by a :class:`PrunedMultiheadAttention` without the heads ``local``."""
        compact_mha(model, self.name, local)
        return {}


def mha_head_group(
    name: str, module: nn.MultiheadAttention, names: dict[int, str], index: int, first: int
) -> MhaHeadGroup | None:
    """The :class:`MhaHeadGroup` of ``module`` (named ``name``); None with fewer than two heads."""
    e, h, d = module.embed_dim, module.num_heads, module.head_dim
    if h < 2 or name == "":
        return None
    weight = module.in_proj_weight
    assert weight is not None
    out = module.out_proj
    layout = HeadLayout(name, ((name, "q", 0), (name, "k", e), (name, "v", 2 * e)), f"{name}.out_proj", d, h, h)
    group = MhaHeadGroup(
        index=index,
        name=name,
        root=module,
        num_channels=e,
        channel_groups=1,
        first=first,
        size=h,
        block=d,
        layout=layout,
    )
    channel = torch.arange(e)
    ids = group.unit_ids(channel)
    for offset in (0, e, 2 * e):
        group.add_slice(ParamSlice(names[id(weight)], weight, 0, channel + offset, channel, PRODUCER, module), ids)
        if module.in_proj_bias is not None:
            bias = module.in_proj_bias
            group.add_slice(ParamSlice(names[id(bias)], bias, 0, channel + offset, channel, PRODUCER, module), ids)
    group.add_slice(ParamSlice(names[id(out.weight)], out.weight, 1, channel, channel, CONSUMER, out), ids)
    return group


def _move_state(
    optimizer: torch.optim.Optimizer, old: torch.Tensor, new: list[tuple[torch.Tensor, int, torch.Tensor]]
) -> None:
    """Give ``old``'s optimizer state, sliced at ``(dim, index)``, to each new parameter, and swap them in.

    Every new parameter gets tensors of its own: a per-parameter scalar such as Adam's ``step`` is
    copied, not shared (a shared one would advance once per parameter at every step).
    """
    state = optimizer.state.pop(old, None)
    for param, dim, index in new:
        if state is not None:
            optimizer.state[param] = {k: _state_for(v, old, dim, index) for k, v in state.items()}
    for group in optimizer.param_groups:
        params: list[torch.Tensor] = []
        for p in group["params"]:
            params.extend([q for q, _d, _i in new] if p is old else [p])
        group["params"] = params


def _state_for(value: object, old: torch.Tensor, dim: int, index: torch.Tensor) -> object:
    """One optimizer-state entry of ``old`` for a new parameter: sliced if shaped like ``old``, else copied."""
    if not isinstance(value, torch.Tensor):
        return value
    if value.shape == old.shape:
        return value.index_select(dim, index.to(value.device))
    return value.clone()


@torch.no_grad()
def compact_mha(
    model: nn.Module, name: str, local: torch.Tensor, optimizer: torch.optim.Optimizer | None = None
) -> PrunedMultiheadAttention:
    """Replace the ``nn.MultiheadAttention`` ``name`` of ``model`` by one without heads ``local``.

    With ``optimizer`` its state of the old packed parameters moves, sliced, to the new layers.

    Example:
        >>> net = nn.Module(); net.attn = nn.MultiheadAttention(8, 4)
        >>> compact_mha(net, "attn", torch.tensor([1])).num_heads
        3
    """
    mha = model.get_submodule(name)
    if not isinstance(mha, nn.MultiheadAttention):
        raise TypeError(f"'{name}' is a {type(mha).__name__}, not an nn.MultiheadAttention")
    keep = torch.ones(mha.num_heads, dtype=torch.bool)
    keep[local.cpu()] = False
    new = PrunedMultiheadAttention.from_mha(mha, keep)
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, new)
    if optimizer is not None:
        e, d = mha.embed_dim, mha.head_dim
        rows = (keep.nonzero().view(-1, 1) * d + torch.arange(d)).flatten()
        projections = (new.q_proj, new.k_proj, new.v_proj)
        assert mha.in_proj_weight is not None
        _move_state(optimizer, mha.in_proj_weight, [(p.weight, 0, rows + i * e) for i, p in enumerate(projections)])
        if mha.in_proj_bias is not None:
            _move_state(optimizer, mha.in_proj_bias, [(p.bias, 0, rows + i * e) for i, p in enumerate(projections)])
        _move_state(optimizer, mha.out_proj.weight, [(new.out_proj.weight, 1, rows)])
        if mha.out_proj.bias is not None and new.out_proj.bias is not None:
            _move_state(optimizer, mha.out_proj.bias, [(new.out_proj.bias, 0, torch.arange(e))])
    return new
