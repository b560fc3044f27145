"""Trainable per-channel multipliers (e.g. Gate Decorator's gates) added to a model's structures.

A multiplier scales the output channels of one module (a norm layer or a conv / linear layer)
through a forward hook. It joins the structures that own those channels as one more producer
slice, so DPM's decay, keep-at-zero and every norm include it. Before compaction it is folded
into the module's weight and bias (``w * g``, ``b * g``), which leaves the output unchanged, and
removed; compaction then sees the original modules only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils.hooks import RemovableHandle

from .groups import ChannelGroup
from .slices import PRODUCER, ParamSlice
from .units import StructureSet

__all__ = ["ChannelMultiplier", "add_channel_multiplier", "remove_channel_multiplier"]


@dataclass
class ChannelMultiplier:
    """One added multiplier: the module it scales, its parameter and its place in the structures.

    ``slice.positions[i]`` of ``param`` belongs to structure ``ids[i]``.
    """

    module_name: str
    module: nn.Module
    attribute: str
    param: nn.Parameter
    handle: RemovableHandle
    layer: ChannelGroup
    slice: ParamSlice
    ids: torch.Tensor


def _producer_slice_of(structures: StructureSet, module_name: str) -> tuple[ChannelGroup, ParamSlice, torch.Tensor]:
    wanted = f"{module_name}.weight" if module_name else "weight"
    for layer, sl, ids in structures.parameter_slices(PRODUCER):
        if sl.name == wanted and sl.dim == 0:
            return layer, sl, ids
    raise ValueError(
        f"module '{module_name}' does not produce the channels of any prunable structure (it has no affine "
        "weight, or it is ignored, or it feeds a model output); add multipliers to norm / conv / linear layers "
        "whose output channels can be pruned"
    )


def add_channel_multiplier(
    structures: StructureSet, module_name: str, init: torch.Tensor | None = None, *, name: str = "channel_gate"
) -> ChannelMultiplier:
    """Multiply the output channels of ``module_name`` by a new trainable vector (ones by default).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3))
        >>> s = StructureSet(net.eval(), torch.randn(1, 1, 8, 8), ignore_classifier=False)
        >>> x = torch.randn(2, 1, 8, 8); before = net(x)
        >>> m = add_channel_multiplier(s, "1", torch.full((4,), 2.0))
        >>> gated = net(x); torch.allclose(gated, before)
        False
        >>> remove_channel_multiplier(s, m); torch.allclose(net(x), gated)  # folded into the BN
        True
    """
    layer, producer, ids = _producer_slice_of(structures, module_name)
    module = structures.model.get_submodule(module_name)
    weight = module.get_parameter("weight")
    channels = weight.shape[0]
    if hasattr(module, name):
        raise ValueError(f"module '{module_name}' already has an attribute '{name}'")
    value = torch.ones(channels) if init is None else torch.as_tensor(init).detach().clone()
    if value.shape != (channels,):
        raise ValueError(f"init for '{module_name}' must have shape ({channels},), got {tuple(value.shape)}")
    param = nn.Parameter(value.to(weight.device, weight.dtype))
    module.register_parameter(name, param)
    channel_dim = 1 if not isinstance(module, nn.Linear) else -1

    def scale(mod: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        gate = getattr(mod, name)
        shape = [1] * output.dim()
        shape[channel_dim] = -1
        return output * gate.view(shape)

    handle = module.register_forward_hook(scale)
    qualified = f"{module_name}.{name}" if module_name else name
    new_slice = ParamSlice(qualified, param, 0, producer.positions.clone(), producer.roots.clone(), PRODUCER, module)
    layer.add_slice(new_slice, ids.clone())
    structures.names[id(param)] = qualified
    structures.slices_changed()
    return ChannelMultiplier(module_name, module, name, param, handle, layer, new_slice, ids.clone())


@torch.no_grad()
def remove_channel_multiplier(structures: StructureSet, multiplier: ChannelMultiplier, *, fold: bool = True) -> None:
    """Remove a multiplier; with ``fold`` its values first scale the module's weight and bias."""
    module, gate = multiplier.module, multiplier.param.detach()
    if fold:
        for attr in ("weight", "bias"):
            tensor = getattr(module, attr, None)
            if tensor is not None:
                tensor.mul_(gate.view([-1] + [1] * (tensor.dim() - 1)).to(tensor.dtype))
    multiplier.handle.remove()
    delattr(module, multiplier.attribute)  # removes the registered parameter
    multiplier.layer.remove_slice(multiplier.slice)
    structures.names.pop(id(multiplier.param), None)
    structures.slices_changed()
