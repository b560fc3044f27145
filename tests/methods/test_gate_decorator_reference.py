"""Gate Decorator as the reference code has it: a 10% per-layer floor, the gated BN weight frozen,
and an initial Tock."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from decayprune import DecaySettings, Pruner, PruneSettings, TrainSettings, create_model
from decayprune.data import load_dataset
from decayprune.methods.global_threshold import layer_floor


def _pruner(policy: str, target: float, **options) -> tuple[torch.nn.Module, Pruner, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    opts = {"prune_ratio": 0.3, "tick_steps": 4, "tock_every": 2, "tock_steps": 4, "lr_min": 0.01, "lr_max": 0.05}
    settings = PruneSettings(
        method="gate_decorator",
        target_macs_fraction=target,
        iterative_steps=2,
        end_epoch=150,
        decay=DecaySettings(policy=policy, steps=5, cooldown=4),
        method_options={**opts, **options},
    )
    pruner = Pruner(model, torch.zeros(1, 1, 8, 8), settings, total_steps=200, steps_per_epoch=1)
    optimizer = pruner.build_optimizer(TrainSettings(lr=0.05, momentum=0.9, device="cpu"))
    return model, pruner, optimizer


def _train(model, pruner, optimizer, steps: int) -> None:
    splits = load_dataset("digits", None, seed=0)
    x, y = splits.train_images, splits.train_labels
    model.train()
    for k in range(steps):
        i = (k * 64) % (len(x) - 64)
        loss = F.cross_entropy(model(x[i : i + 64]), y[i : i + 64])
        optimizer.zero_grad()
        loss.backward()
        pruner.after_backward()
        optimizer.step()
        pruner.after_step()


def test_every_layer_keeps_ten_percent_at_an_extreme_target_on_digits() -> None:
    model, pruner, optimizer = _pruner("sp+sr", 0.05)
    _train(model, pruner, optimizer, 200)
    pruner.finish()
    s = pruner.structures
    assert s.macs(pruner.engine.committed()) <= 1.01 * pruner.final_macs  # the target is still met
    for layer in s.layers:
        live = int((~s.pruned[layer.first : layer.first + layer.size]).sum())
        assert live >= layer_floor(layer.size, 1, 0.1), layer.name
    big = max(s.layers, key=lambda layer: layer.size)
    assert layer_floor(big.size, 1, 0.1) > 1  # the floor is a fraction, not just one channel


def test_gated_norm_weight_is_frozen_while_gated_and_trainable_after_compaction() -> None:
    model, pruner, optimizer = _pruner("oneshot", 0.5, initial_tock_steps=6)
    bn = model.get_submodule(pruner.method.gates[0].module_name)
    before = bn.weight.detach().clone()
    gate_before = pruner.method.gates[0].param.detach().clone()
    assert pruner.method.phase(pruner.context, pruner.schedule.steps[0]).kind == "tock"  # the initial Tock
    _train(model, pruner, optimizer, 10)
    after = bn.weight.detach()
    assert not bn.weight.requires_grad
    assert bool(((after == before) | (after == 0)).all())  # unchanged, except channels pruned to zero
    assert int((after == before).sum()) > 0
    assert not torch.equal(pruner.method.gates[0].param.detach(), gate_before)  # the gate carries the scale
    pruner.finish()
    pruner.compact()
    assert bn.weight.requires_grad
    trained = bn.weight.detach().clone()  # ... and the optimizer trains it after compaction
    optimizer.zero_grad()
    F.cross_entropy(model(torch.randn(8, 1, 8, 8)), torch.arange(8)).backward()
    optimizer.step()
    assert not torch.equal(bn.weight.detach(), trained)


def test_with_the_norm_weight_trainable_it_moves() -> None:
    model, pruner, optimizer = _pruner("oneshot", 0.5, freeze_norm_weight=False)
    bn = model.get_submodule(pruner.method.gates[0].module_name)
    before = bn.weight.detach().clone()
    _train(model, pruner, optimizer, 10)
    assert not torch.equal(bn.weight.detach(), before)
