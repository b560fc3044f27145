"""Helpers shared by the structure tests (imported by name: test folders have no __init__)."""

from __future__ import annotations

import torch
import torch.nn as nn

from decayprune.structure import StructureSet


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every BN non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)


def random_mask(s: StructureSet, fraction: float, seed: int) -> torch.Tensor:
    """About ``fraction`` of the structures, leaving every layer at least one."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(s.num_structures, generator=g) < fraction
    for layer in s.layers:
        part = mask[layer.first : layer.first + layer.size]
        if part.all():
            part[int(torch.randint(layer.size, (1,), generator=g))] = False
    return mask
