"""ThiNet (Luo et al., ICCV 2017): keep the channels the next layer needs to rebuild its output.

For every layer group, the inputs of its consumer layers (the next convs / linears, all of them
for residual or concatenated channels) are captured on calibration data. At randomly sampled
output entries of those consumers, each input channel's contribution ``z_c`` is computed; ThiNet
greedily grows the removal set ``T`` with the channel that keeps ``||sum_{c in T} z_c||^2``
smallest. The score of a structure is its position in that greedy order divided by the layer
size (first removed: 0), so a global ranking prunes every layer in ThiNet's order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from ..structure import CONSUMER
from .base import Criterion, register_criterion
from .distributed import all_reduce_mean

if TYPE_CHECKING:
    from .view import ScoringView

__all__ = ["ThiNet", "greedy_removal_order"]


def greedy_removal_order(z: torch.Tensor) -> torch.Tensor:
    """Columns of ``z`` ``[entries, C]`` in ThiNet's greedy order (smallest added reconstruction error first).

    Example:
        >>> z = torch.tensor([[1.0, 0.1, -1.0], [1.0, 0.1, -1.0]])
        >>> greedy_removal_order(z).tolist()  # 1 is small; then 0 and 2 cancel each other
        [1, 2, 0]
    """
    z = z.double()
    c = z.shape[1]
    removed = torch.zeros(c, dtype=torch.bool)
    partial = torch.zeros(z.shape[0], dtype=z.dtype)
    order = []
    for _ in range(c):
        error = (partial[:, None] + z).pow(2).sum(0)
        error[removed] = float("inf")
        pick = int(torch.argmin(error))
        order.append(pick)
        removed[pick] = True
        partial = partial + z[:, pick]
    return torch.tensor(order, dtype=torch.long)


def _contributions(
    module: nn.Module, x: torch.Tensor, columns: torch.Tensor, entries: int, generator: torch.Generator
) -> torch.Tensor:
    """Contribution of each input channel in ``columns`` to ``entries`` random outputs; ``[entries, k]``."""
    weight = module.get_parameter("weight").detach()
    if isinstance(module, nn.Linear):
        flat = x.reshape(-1, x.shape[-1])  # [rows, C]
        rows = torch.randint(flat.shape[0], (entries,), generator=generator)
        outs = torch.randint(weight.shape[0], (entries,), generator=generator)
        return (weight[outs][:, columns] * flat[rows][:, columns]).float()
    if not isinstance(module, nn.Conv2d) or module.groups != 1:
        raise ValueError(f"ThiNet reads Linear and ungrouped Conv2d consumers, got {type(module).__name__}")
    k = columns.numel()
    sub_w = weight[:, columns]  # [O, k, kh, kw]
    per_channel = F.conv2d(
        x[:, columns],
        sub_w.transpose(0, 1).reshape(k * weight.shape[0], 1, *weight.shape[2:]),
        stride=module.stride,
        padding=module.padding,
        dilation=module.dilation,
        groups=k,
    )
    n, _, h, w = per_channel.shape
    per_channel = per_channel.view(n, k, weight.shape[0], h, w)
    idx = [torch.randint(size, (entries,), generator=generator) for size in (n, weight.shape[0], h, w)]
    return per_channel[idx[0], :, idx[1], idx[2], idx[3]].float()  # [entries, k]


@register_criterion("thinet")
class ThiNet(Criterion):
    """Greedy next-layer reconstruction order (ThiNet); forward passes only.

    Example:
        >>> ThiNet(entries=256).options.entries
        256
    """

    needs = frozenset({"data"})
    paper = "Luo et al., ThiNet: A Filter Level Pruning Method for Deep Neural Network Compression, ICCV 2017"

    class Options(BaseModel):
        """Options of :class:`ThiNet`."""

        model_config = ConfigDict(extra="forbid")
        batches: int = Field(4, ge=1, description="calibration batches read")
        entries: int = Field(512, ge=1, description="sampled output entries per consumer and batch")
        seed: int = Field(0, ge=0, description="seed of the sampled entries")

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        s = ctx.structures
        generator = torch.Generator().manual_seed(self.options.seed)
        consumers: dict[nn.Module, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
        for layer, sl, ids in s.parameter_slices(CONSUMER):
            module = sl.owner
            ungrouped = isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1)
            if module is not None and ungrouped and sl.is_weight:
                consumers.setdefault(module, []).append((layer.index, sl.positions, ids))
        rows: dict[int, list[torch.Tensor]] = {}
        inputs_of: dict[nn.Module, torch.Tensor] = {}

        def grab(module: nn.Module, args: Any, _out: Any) -> None:
            inputs_of[module] = args[0].detach()

        handles = [m.register_forward_hook(grab) for m in consumers]
        was_training = ctx.model.training
        ctx.model.eval()
        try:
            with torch.no_grad():
                for inputs, _labels in ctx.calibration_batches(self.options.batches):
                    inputs_of.clear()
                    ctx.model(inputs)
                    for module, parts in consumers.items():
                        if module not in inputs_of:
                            continue  # not reached by this forward pass
                        for layer_index, positions, ids in parts:
                            z = _contributions(
                                module,
                                inputs_of[module],
                                positions.to(inputs_of[module].device),
                                self.options.entries,
                                generator,
                            )
                            full = torch.zeros(z.shape[0], s.layers[layer_index].size)
                            full.index_add_(1, s.layers[layer_index].local(ids), z.cpu())
                            rows.setdefault(layer_index, []).append(full)
        finally:
            ctx.model.train(was_training)
            for h in handles:
                h.remove()
        scores = torch.ones(s.num_structures)
        for layer in s.layers:
            if layer.index not in rows:
                continue  # no reachable consumer: kept last
            order = greedy_removal_order(torch.cat(rows[layer.index]))
            rank = torch.empty(layer.size)
            rank[order] = torch.arange(layer.size, dtype=torch.float32) / layer.size
            scores[layer.span] = rank
        return all_reduce_mean(scores)
