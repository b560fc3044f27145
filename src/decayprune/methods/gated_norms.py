"""Gated norm layers (Gate Decorator, You et al., NeurIPS 2019): a trainable gate after each norm layer.

Every norm layer whose output channels belong to a prunable structure gets a channel gate ``g``
through :meth:`PruneContext.add_channel_multiplier`, so the gate is one more producer slice of its
structure (decay, keep-at-zero and norms include it) and is folded back into the norm's affine
parameters before compaction. With ``init="gamma"`` the gate starts at ``|gamma|`` and gamma and
beta are divided by it, so the gated layer computes exactly what the plain one did.

Coupled channels (e.g. residual adds) are one structure, so their gates share one score:
:func:`gate_taylor_scores` sums ``|g * dL/dg|`` over every gate of a structure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn as nn

from ..errors import UserError
from ..structure import PRODUCER
from ..structure.channel_params import ChannelMultiplier

if TYPE_CHECKING:
    from .context import PruneContext

__all__ = ["GATE_ATTRIBUTE", "add_norm_gates", "gate_taylor_scores", "gated_norm_names"]

GATE_ATTRIBUTE = "gate"
"""Name under which each gate is registered on its norm layer (``<norm>.gate`` in state dicts)."""

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm2d)
_MIN_GAMMA = 1e-6


def gated_norm_names(ctx: "PruneContext") -> list[str]:
    """Names of the affine norm layers that produce the channels of some prunable structure.

    Example:
        >>> from decayprune import Pruner, PruneSettings, create_model
        >>> model = create_model("small_cnn", num_classes=10, in_channels=1)
        >>> p = Pruner(model, torch.zeros(1, 1, 8, 8), PruneSettings(target_macs_fraction=0.5), total_steps=10)
        >>> gated_norm_names(p.context)[:2]
        ['features.1', 'features.4']
    """
    names = set()
    module_names = {m: n for n, m in ctx.model.named_modules()}
    for _layer, sl, _ids in ctx.structures.parameter_slices(PRODUCER):
        if sl.dim == 0 and sl.is_weight and isinstance(sl.owner, _NORMS) and sl.owner in module_names:
            names.add(module_names[sl.owner])
    order = {name: i for i, (name, _m) in enumerate(ctx.model.named_modules())}
    return sorted(names, key=order.__getitem__)


@torch.no_grad()
def add_norm_gates(ctx: "PruneContext", init: Literal["gamma", "ones"] = "gamma") -> list[ChannelMultiplier]:
    """Put a channel gate after every prunable affine norm layer; the model's output is unchanged.

    Args:
        ctx: The pruning context (its structures learn about the gates).
        init: ``"gamma"``: ``g = |gamma|`` with gamma and beta divided by it (the paper's start:
            the gate carries the channel's scale); ``"ones"``: ``g = 1``.

    Raises:
        UserError: When ``init`` is unknown or the model has no prunable norm layer.

    Example:
        >>> from decayprune import Pruner, PruneSettings, create_model
        >>> model = create_model("small_cnn", num_classes=10, in_channels=1).eval()
        >>> p = Pruner(model, torch.zeros(1, 1, 8, 8), PruneSettings(target_macs_fraction=0.5), total_steps=10)
        >>> x = torch.randn(2, 1, 8, 8); before = model(x)
        >>> gates = add_norm_gates(p.context)
        >>> torch.allclose(model(x), before, atol=1e-6), gates[0].module_name
        (True, 'features.1')
    """
    if init not in ("gamma", "ones"):
        raise UserError(f"gate init must be 'gamma' or 'ones', got {init!r}")
    names = gated_norm_names(ctx)
    if not names:
        raise UserError(
            "Gate Decorator needs affine norm layers (BatchNorm / GroupNorm) after prunable layers; "
            "this model has none whose channels can be pruned"
        )
    gates = []
    for name in names:
        module = ctx.model.get_submodule(name)
        weight, bias = module.get_parameter("weight"), getattr(module, "bias", None)
        value = None
        if init == "gamma":
            gamma = weight.detach()
            value = torch.where(gamma.abs() > _MIN_GAMMA, gamma.abs(), torch.ones_like(gamma))
            weight.div_(value)
            if isinstance(bias, torch.Tensor):
                bias.div_(value)
        gates.append(ctx.add_channel_multiplier(name, value, name=GATE_ATTRIBUTE))
    return gates


def gate_taylor_scores(gates: list[ChannelMultiplier], num_structures: int) -> torch.Tensor:
    """``|g * dL/dg|`` per structure from the gates' current gradients (0 where no gradient), float64 CPU.

    The first-order Taylor estimate of the loss change when a gate is set to zero; the gates of
    coupled channels add up into their structure's score.

    Example:
        >>> import torch.nn as nn
        >>> from decayprune.structure import StructureSet
        >>> from decayprune.structure.channel_params import add_channel_multiplier
        >>> net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 3))
        >>> s = StructureSet(net, torch.randn(1, 1, 8, 8), ignore_classifier=False)
        >>> g = add_channel_multiplier(s, "1", torch.tensor([1.0, 2.0, 3.0]))
        >>> g.param.grad = torch.tensor([0.5, -1.0, 0.0])
        >>> gate_taylor_scores([g], s.num_structures)[g.ids].tolist()
        [0.5, 2.0, 0.0]
    """
    scores = torch.zeros(num_structures, dtype=torch.float64)
    for gate in gates:
        grad = gate.param.grad
        if grad is None:
            continue
        value = (gate.param.detach() * grad.detach()).abs().double().cpu()
        scores.index_add_(0, gate.ids, value[gate.slice.positions])
    return scores
