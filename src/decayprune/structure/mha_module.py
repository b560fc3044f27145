"""The module an ``nn.MultiheadAttention`` becomes once some of its heads are removed.

``nn.MultiheadAttention`` derives its head size from ``embed_dim // num_heads``, so it cannot hold
fewer heads of the same size. :class:`PrunedMultiheadAttention` keeps the head size and the
embedding width, with separate query / key / value / output ``nn.Linear`` layers of inner width
``num_heads * head_dim``, and the same call signature and outputs (``(output, weights or None)``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PrunedMultiheadAttention"]


def _as_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean mask (True: not attended) as an additive ``-inf`` bias; a float mask as is."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, float("-inf"))
    return mask.to(dtype)


class PrunedMultiheadAttention(nn.Module):
    """Multi-head attention with ``num_heads`` heads of ``head_dim`` channels on ``embed_dim`` inputs.

    Called like ``nn.MultiheadAttention`` (``query, key, value, key_padding_mask, need_weights,
    attn_mask, average_attn_weights, is_causal``). A 3-D ``attn_mask`` may be given per head of the
    module it came from (``batch * source_heads`` rows): the rows of the kept heads
    (:attr:`kept_heads`, a buffer) are used. Averaged attention weights average the kept heads.
    The module never takes PyTorch's fused fast path (``_qkv_same_embed_dim`` is False), so a
    ``TransformerEncoderLayer`` holding it runs its ordinary path.

    Example:
        >>> mha = nn.MultiheadAttention(8, 4, batch_first=True)
        >>> pruned = PrunedMultiheadAttention.from_mha(mha)
        >>> x = torch.randn(2, 3, 8)
        >>> torch.allclose(pruned(x, x, x)[0], mha(x, x, x)[0], atol=1e-6)
        True
    """

    _qkv_same_embed_dim = False
    kept_heads: torch.Tensor
    in_proj_weight = None
    in_proj_bias = None

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        head_dim: int,
        *,
        bias: bool = True,
        dropout: float = 0.0,
        batch_first: bool = False,
        source_heads: int | None = None,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.batch_first = batch_first
        self.source_heads = source_heads if source_heads is not None else num_heads
        inner = num_heads * head_dim
        self.q_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.k_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.v_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)
        self.register_buffer("kept_heads", torch.arange(num_heads))

    @classmethod
    @torch.no_grad()
    def from_mha(cls, mha: nn.MultiheadAttention, keep: torch.Tensor | None = None) -> PrunedMultiheadAttention:
        """The heads ``keep`` (boolean per head; all by default) of ``mha`` as a new module (weights copied)."""
        if not mha._qkv_same_embed_dim or mha.in_proj_weight is None:
            raise ValueError("only an nn.MultiheadAttention with one packed in_proj_weight can be converted")
        e, h, d = mha.embed_dim, mha.num_heads, mha.head_dim
        keep = torch.ones(h, dtype=torch.bool) if keep is None else keep.bool().cpu()
        heads = keep.nonzero().flatten()
        rows = (heads.view(-1, 1) * d + torch.arange(d)).flatten().to(mha.in_proj_weight.device)
        bias = mha.in_proj_bias is not None
        new = cls(
            e,
            int(heads.numel()),
            d,
            bias=bias,
            dropout=float(mha.dropout),
            batch_first=bool(mha.batch_first),
            source_heads=h,
        )
        new.to(device=mha.in_proj_weight.device, dtype=mha.in_proj_weight.dtype)
        for i, proj in enumerate((new.q_proj, new.k_proj, new.v_proj)):
            proj.weight.copy_(mha.in_proj_weight[rows + i * e])
            if bias:
                assert mha.in_proj_bias is not None and proj.bias is not None
                proj.bias.copy_(mha.in_proj_bias[rows + i * e])
        new.out_proj.weight.copy_(mha.out_proj.weight[:, rows])
        if new.out_proj.bias is not None and mha.out_proj.bias is not None:
            new.out_proj.bias.copy_(mha.out_proj.bias)
        new.kept_heads = heads.to(new.kept_heads.device)
        new.train(mha.training)
        return new

    def keep_heads(self, keep: torch.Tensor) -> None:
        """Record that only the heads ``keep`` (boolean per current head) remain (after a head removal)."""
        kept = self.kept_heads
        assert isinstance(kept, torch.Tensor)
        self.kept_heads = kept[keep.bool().to(kept.device)].clone()

    def _attn_bias(
        self, attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, n: int, dtype: torch.dtype
    ) -> torch.Tensor | None:
        bias = _as_bias(attn_mask, dtype)
        if bias is not None:
            if bias.dim() == 2:
                bias = bias.view(1, 1, *bias.shape)
            elif bias.shape[0] == n * self.num_heads:
                bias = bias.view(n, self.num_heads, *bias.shape[1:])
            elif bias.shape[0] == n * self.source_heads:
                kept = self.kept_heads
                assert isinstance(kept, torch.Tensor)
                bias = bias.view(n, self.source_heads, *bias.shape[1:])[:, kept.to(bias.device)]
            else:
                raise RuntimeError(
                    f"3-D attn_mask of {bias.shape[0]} rows; expected batch x heads ({n} x {self.num_heads} or "
                    f"{n} x {self.source_heads} of the unpruned module)"
                )
        pad = _as_bias(key_padding_mask, dtype)
        if pad is not None:
            pad = pad.view(n, 1, 1, pad.shape[-1])
            bias = pad if bias is None else bias + pad
        return bias

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention output ``(output, weights or None)``, shaped as ``nn.MultiheadAttention`` returns them."""
        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint (as nn.MultiheadAttention)")
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        n, length, _ = query.shape
        h, d = self.num_heads, self.head_dim
        q = self.q_proj(query).view(n, length, h, d).transpose(1, 2)
        k = self.k_proj(key).view(n, key.shape[1], h, d).transpose(1, 2)
        v = self.v_proj(value).view(n, value.shape[1], h, d).transpose(1, 2)
        scores = (q * math.sqrt(1.0 / d)) @ k.transpose(-2, -1)
        bias = self._attn_bias(attn_mask, key_padding_mask, n, scores.dtype)
        if bias is not None:
            scores = scores + bias
        weights = scores.softmax(dim=-1)
        if self.training and self.dropout > 0:
            weights = F.dropout(weights, p=self.dropout)
        out = self.out_proj((weights @ v).transpose(1, 2).reshape(n, length, h * d))
        if unbatched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(dim=1)
        return out, weights.squeeze(0) if unbatched else weights

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"source_heads={self.source_heads}, batch_first={self.batch_first}"
        )
