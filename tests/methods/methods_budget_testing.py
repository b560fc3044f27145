"""A short training run of any method, for the width-multiple and latency-budget tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from decayprune import Pruner, PruneSettings, TrainSettings, create_model

X = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.arange(32) % 10
BATCHES = [(X[:16], Y[:16]), (X[16:], Y[16:])]
STEPS = 40

#: Options that let every method finish its selections inside :data:`STEPS` steps.
METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    "gate_decorator": {"prune_ratio": 0.3, "tick_steps": 2, "tock_every": 2, "tock_steps": 2},
    "otov2": {"epsilon": 0.9},
}
METHODS = ["depgraph", "l1", "random", "iterative", "slimming", "otov2", "gate_decorator"]


def run_method(method: str, run_dir: Path | None = None, policy: str = "oneshot", **budget: Any) -> Pruner:
    """Train small_cnn for :data:`STEPS` SGD steps under ``method`` with the given budget; decays finished."""
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    settings = PruneSettings(
        method=method,
        method_options=METHOD_OPTIONS.get(method, {}),
        iterative_steps=2,
        end_epoch=24,
        decay={"policy": policy, "steps": 4, "cooldown": 4},
        latency={"device": "cpu"},
        **budget,
    )
    pruner = Pruner(
        model, X[:1], settings, total_steps=STEPS, steps_per_epoch=1, calibration_data=BATCHES, run_dir=run_dir
    )
    opt = pruner.build_optimizer(TrainSettings(lr=0.02, momentum=0.9, device="cpu"))
    for step in range(STEPS):
        x, y = BATCHES[step % 2]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        pruner.after_backward()
        opt.step()
        pruner.after_step()
    pruner.finish()
    return pruner


def kept_per_layer(pruner: Pruner) -> dict[str, tuple[int, int]]:
    """``{layer: (channels kept, channels)}`` of the pruned mask."""
    s = pruner.structures
    out = {}
    for layer in s.layers:
        per = layer.num_channels // layer.size
        pruned = int(s.pruned[layer.first : layer.first + layer.size].sum())
        out[layer.name] = ((layer.size - pruned) * per, layer.num_channels)
    return out
