"""Small nets and a training loop shared by the sparse tests."""

from __future__ import annotations

import torch
from torch import nn

from decayprune.decay import DecayEngine
from decayprune.sparse import ElementMasks


def small_convnet(seed: int = 0) -> nn.Sequential:
    """Conv -> BN -> ReLU -> Conv -> pool -> Linear, on 1x8x8 inputs."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, bias=False),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 3),
    )


def batch(seed: int = 1, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def train_steps(
    model: nn.Module, units: ElementMasks, engine: DecayEngine, opt: torch.optim.Optimizer, steps: int, start: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
    """``steps`` optimizer steps; per step (held mask, weights [S], optimizer state of the weights)."""
    x, y = batch()
    out = []
    for k in range(start + 1, start + steps + 1):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        engine.after_backward()
        opt.step()
        engine.after_step(step=k)
        states = [
            units.per_weight(opt.state[w][key] for w in units.weights)
            for key in ("momentum_buffer", "exp_avg", "exp_avg_sq")
            if key in opt.state[units.weights[0]]
        ]
        out.append((units.pruned.clone(), units.per_weight(units.weights), states))
    return out
