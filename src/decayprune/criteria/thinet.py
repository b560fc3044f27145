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

from ..structure import CONSUMER, PRODUCER
from .base import Criterion, register_criterion
from .distributed import all_reduce_mean
from .passes import eval_mode
from .reduce import channel_dim, group_activation_sites

if TYPE_CHECKING:
    from .view import ScoringView

__all__ = ["ThiNet", "greedy_removal_order", "thinet_reconstruct"]


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
    module: nn.Module,
    x: torch.Tensor,
    columns: torch.Tensor,
    entries: int,
    generator: torch.Generator,
    distinct: bool = False,
    outputs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Contribution of each input channel in ``columns`` to ``entries`` random outputs; ``[entries, k]``.

    ``distinct``: a linear layer's entries are drawn without replacement (at most rows x outputs).
    ``outputs``: the output channels entries may come from (default: all).
    """
    weight = module.get_parameter("weight").detach()
    allowed = torch.arange(weight.shape[0]) if outputs is None else outputs.cpu()
    if isinstance(module, nn.Linear):
        flat = x.reshape(-1, x.shape[-1])  # [rows, C]
        if distinct:
            pairs = torch.randperm(flat.shape[0] * allowed.numel(), generator=generator)[:entries]
            rows, outs = pairs // allowed.numel(), allowed[pairs % allowed.numel()]
        else:
            rows = torch.randint(flat.shape[0], (entries,), generator=generator)
            outs = allowed[torch.randint(allowed.numel(), (entries,), generator=generator)]
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
    idx = [torch.randint(size, (entries,), generator=generator) for size in (n, allowed.numel(), h, w)]
    idx[1] = allowed[idx[1]]
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
        consumers = _consumer_parts(s)
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


def _consumer_parts(s: Any) -> dict[nn.Module, list[tuple[int, torch.Tensor, torch.Tensor]]]:
    """Per ungrouped Linear / Conv2d consumer, ``(layer index, input positions, unit ids)`` of each slice."""
    consumers: dict[nn.Module, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
    for layer, sl, ids in s.parameter_slices(CONSUMER):
        module = sl.owner
        ungrouped = isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1)
        if module is not None and ungrouped and sl.is_weight:
            consumers.setdefault(module, []).append((layer.index, sl.positions, ids))
    return consumers


def _sampled_contributions(
    ctx: "ScoringView",
    consumers: dict[nn.Module, list[tuple[int, torch.Tensor, torch.Tensor]]],
    batches: list[Any],
    entries: int,
    seed: int,
    removed_units: torch.Tensor,
    zero_removed: bool,
) -> dict[tuple[nn.Module, int], list[torch.Tensor]]:
    """Per (consumer, slice), the ``[entries, C]`` contributions of each batch (same entries for the same seed).

    Entries come from the consumer's kept output channels only. With ``zero_removed`` the removed
    units' activations are zeroed first (the network as it will be).
    """
    generator = torch.Generator().manual_seed(seed)
    inputs_of: dict[nn.Module, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda mod, args, _o: inputs_of.__setitem__(mod, args[0].detach())) for m in consumers
    ]
    if zero_removed:
        for group in ctx.structures.layers:
            for module, positions, ids in group_activation_sites(group):
                gone = positions[removed_units[ids]]
                if gone.numel():
                    handles.append(module.register_forward_hook(_zero_channels(gone, channel_dim(module))))
    kept_outputs = _kept_outputs(ctx.structures, consumers, removed_units)
    rows: dict[tuple[nn.Module, int], list[torch.Tensor]] = {}
    try:
        with eval_mode(ctx.model):
            for inputs, _labels in batches:
                inputs_of.clear()
                ctx.model(inputs)
                for module, parts in consumers.items():
                    if module not in inputs_of:
                        continue
                    x = inputs_of[module]
                    for k, (_layer, positions, _ids) in enumerate(parts):
                        z = _contributions(
                            module, x, positions.to(x.device), entries, generator, True, kept_outputs.get(module)
                        )
                        rows.setdefault((module, k), []).append(z.double().cpu())
    finally:
        for h in handles:
            h.remove()
    return rows


def _kept_outputs(s: Any, consumers: dict[nn.Module, Any], removed: torch.Tensor) -> dict[nn.Module, torch.Tensor]:
    """Per consumer that is itself pruned, the output channels it keeps (the only ones worth rebuilding)."""
    gone: dict[nn.Module, torch.Tensor] = {}
    for _layer, sl, ids in s.parameter_slices(PRODUCER):
        if sl.owner in consumers and sl.is_weight:
            gone.setdefault(sl.owner, torch.zeros(0, dtype=torch.long))
            gone[sl.owner] = torch.cat([gone[sl.owner], sl.positions[removed[ids]].cpu()])
    out = {}
    for module, positions in gone.items():
        keep = torch.ones(module.get_parameter("weight").shape[0], dtype=torch.bool)
        keep[positions] = False
        out[module] = keep.nonzero().flatten()
    return out


def _held_out_least_squares(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """``argmin ||y - z w||`` when a fit on half the entries beats ``w = 1`` on the other half, else None.

    Too few distinct entries for the kept channels (a small calibration set before a linear layer)
    overfit the scales; the held-out check keeps the layer as it is then.
    """
    fit, held = slice(0, None, 2), slice(1, None, 2)
    trial = torch.linalg.lstsq(z[fit], y[fit]).solution
    ones = torch.ones_like(trial)
    if float((y[held] - z[held] @ trial).square().sum()) >= float((y[held] - z[held] @ ones).square().sum()):
        return None
    return torch.linalg.lstsq(z, y).solution.flatten()


def _zero_channels(channels: torch.Tensor, dim: int) -> Any:
    """A forward hook zeroing ``channels`` of the output along ``dim``."""

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        out = output.clone()
        out.index_fill_(dim % out.dim(), channels.to(out.device), 0.0)
        return out

    return hook


@torch.no_grad()
def thinet_reconstruct(
    ctx: "ScoringView", removed: torch.Tensor, *, batches: int = 4, entries: int = 512, seed: int = 0
) -> dict[nn.Module, torch.Tensor]:
    """ThiNet's least-squares step: rescale the kept input channels of every consumer of ``removed`` units.

    For each consumer layer (Linear / ungrouped Conv2d) reading a layer group that loses units, its
    output ``y`` over that group's input channels is sampled at random entries in the network as it
    is, and the kept channels' contributions ``Z_kept`` at the same entries in the network with every
    removed unit zeroed (so earlier layers' removals count, as in ThiNet's layer-by-layer pass); the
    kept channels' weight columns are then scaled by ``w = argmin ||y - Z_kept w||^2`` (the paper's
    ``w = (X^T X)^-1 X^T y``), when a fit on half the entries lowers the error on the other half
    (otherwise the layer is left as it is: too few distinct entries). Call it *before* the removed
    units are zeroed. Returns the scale vector applied to each consumer (over its slice's
    kept positions).

    Example:
        >>> from decayprune.structure import StructureSet
        >>> from decayprune.criteria import ScoringView
        >>> net = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 1, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))  # units 0, 1 agree
        ...     _ = net[2].weight.fill_(1.0)
        >>> x = torch.rand(8, 2)
        >>> view = ScoringView(net, StructureSet(net, x[:1]), calibration_data=[(x, torch.zeros(8))])
        >>> scales = thinet_reconstruct(view, torch.tensor([True, False, False]), entries=64)
        >>> [round(v, 4) for v in scales[net[2]].tolist()]   # unit 1 takes over unit 0's share
        [2.0, 1.0]
    """
    s = ctx.structures
    removed = removed.to(torch.bool).cpu()
    consumers = {
        module: [(i, pos, ids) for i, pos, ids in parts if bool(removed[ids].any()) and not bool(removed[ids].all())]
        for module, parts in _consumer_parts(s).items()
    }
    consumers = {m: parts for m, parts in consumers.items() if parts}
    batches_list = list(ctx.calibration_batches(batches))
    full = _sampled_contributions(ctx, consumers, batches_list, entries, seed, removed, False)
    pruned = _sampled_contributions(ctx, consumers, batches_list, entries, seed, removed, True)
    applied = {}
    for module, parts in consumers.items():
        weight = module.get_parameter("weight")
        for k, (_layer, positions, ids) in enumerate(parts):
            if (module, k) not in full or (module, k) not in pruned:
                continue
            keep = ~removed[ids]
            target = torch.cat(full[(module, k)]).sum(1, keepdim=True)
            scale = _held_out_least_squares(torch.cat(pruned[(module, k)])[:, keep], target)
            if scale is None:
                continue
            columns = positions[keep].to(weight.device)
            shape = [1] * weight.dim()
            shape[1] = -1
            weight[:, columns] *= scale.to(weight.device, weight.dtype).view(shape)
            applied[module] = scale.float()
    return applied
