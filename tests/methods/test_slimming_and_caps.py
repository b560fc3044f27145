"""Network Slimming's L1 penalty and the per-layer caps of every ranking method."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from decayprune import DecaySettings, Pruner, PruneSettings, TrainSettings, UserError, create_model
from decayprune.criteria import norm_layer_slices
from decayprune.methods import NetworkSlimming, create_method, fill_to_budget, layer_cap_ratios

X = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.arange(16) % 10
STEPS = 24


def make(method: str = "slimming", policy: str = "oneshot", **options) -> Pruner:
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    decay = DecaySettings(policy=policy, steps=4, t_rate=0.5, t_len=0.5, cooldown=2)
    settings = PruneSettings(
        method=method,
        method_options=options,
        target_macs_fraction=0.3,
        iterative_steps=2,
        end_epoch=STEPS // 2,
        decay=decay,
    )
    return Pruner(model, X[:1], settings, total_steps=STEPS, steps_per_epoch=1)


def bn_layers(p: Pruner) -> list[nn.BatchNorm2d]:
    return [m for m in p.model.modules() if isinstance(m, nn.BatchNorm2d)]


def test_slimming_adds_the_l1_subgradient_to_bn_scales_only() -> None:
    p = make(sparsity=0.01)
    with torch.no_grad():
        for bn in bn_layers(p):
            bn.weight.copy_(torch.linspace(-1, 1, bn.weight.numel()))
    p.model.zero_grad()
    F.cross_entropy(p.model(X), Y).backward()
    before = {n: q.grad.clone() for n, q in p.model.named_parameters()}
    p.context.step = 1
    p.method.after_backward(p.context)
    for name, q in p.model.named_parameters():
        if name.endswith("weight") and q.dim() == 1:  # BN scales
            torch.testing.assert_close(q.grad - before[name], 0.01 * torch.sign(q.detach()))
        else:
            assert torch.equal(q.grad, before[name]), name


def test_slimming_spares_committed_channels_and_stops_after_pruning() -> None:
    p = make(sparsity=0.01)
    p.engine.start(torch.tensor([0, 1]), 0)
    bn = next(bn for bn, _pos, ids in norm_layer_slices(p.structures) if int(ids[0]) == 0)
    bn.weight.grad = torch.zeros_like(bn.weight)
    p.context.step = 1
    p.method.after_backward(p.context)
    assert bn.weight.grad[:2].abs().sum() == 0 and bn.weight.grad[2:].abs().min() > 0
    bn.weight.grad.zero_()
    p.context.step = p.schedule.steps[-1] + 1
    p.method.after_backward(p.context)
    assert bn.weight.grad.abs().sum() == 0


def test_slimming_ranks_by_bn_scale_globally_by_default() -> None:
    method = create_method("slimming")
    assert isinstance(method, NetworkSlimming) and method.criterion.name == "bn_scale"
    assert method.options.ranking == "global"


@pytest.mark.parametrize("policy", ["oneshot", "sp+sr"])
def test_slimming_meets_the_budget_and_compacts(policy: str) -> None:
    p = make(policy=policy, sparsity=1e-3)
    opt = p.build_optimizer(TrainSettings(lr=0.05, momentum=0.9, weight_decay=0.0, device="cpu"))
    for step in range(STEPS):
        x, y = X[step % 2 * 8 :][:8], Y[step % 2 * 8 :][:8]
        opt.zero_grad()
        F.cross_entropy(p.model(x), y).backward()
        p.after_backward()
        opt.step()
        p.after_step()
    assert p.structures.macs(p.engine.committed()) <= p.final_macs * 1.01
    p.finish()
    p.compact()
    assert p.model(X).shape == (16, 10)


# ---------------------------------------------------------------------------- layer caps


def layer(p: Pruner, name: str):
    return next(item for item in p.structures.layers if item.name == name)


@pytest.mark.parametrize("ranking", ["global", "layer"])
def test_layer_caps_limit_the_named_layers(ranking: str) -> None:
    p = make("iterative")
    s = p.structures
    first, other = layer(p, "features.0"), layer(p, "features.3")
    scores = torch.ones(s.num_structures)
    scores[first.first : first.first + first.size] = 0.0  # features.0 is the cheapest to prune
    free = torch.ones(s.num_structures, dtype=torch.bool)
    uncapped = fill_to_budget(p.context, scores, 0.3 * p.base_macs, free, ranking=ranking)
    capped = fill_to_budget(
        p.context,
        scores,
        0.3 * p.base_macs,
        free,
        ranking=ranking,
        layer_caps={"features.0": 0.25, "features.[3-9]": 0.5},
    )

    def count(ids: torch.Tensor, item) -> int:
        return int(((ids >= item.first) & (ids < item.first + item.size)).sum())

    assert count(uncapped, first) > first.size // 4
    assert count(capped, first) <= first.size // 4
    assert count(capped, other) <= other.size // 2
    mask = torch.zeros(s.num_structures, dtype=torch.bool)
    mask[capped] = True
    assert s.macs(mask) <= 0.3 * p.base_macs or count(capped, other) == other.size // 2


def test_layer_cap_ratios_take_the_tighter_limit_and_first_pattern() -> None:
    p = make("iterative")
    ratios = dict(
        zip(
            [item.name for item in p.structures.layers],
            layer_cap_ratios(p.structures, 0.6, {"features.0": 0.9, "features.*": 0.2}),
            strict=True,
        )
    )
    assert ratios["features.0"] == 0.6 and ratios["features.3"] == 0.2


def test_bad_layer_caps_are_refused_with_the_layer_names() -> None:
    with pytest.raises(UserError, match="matches no prunable layer; layers: .*features.0"):
        make("iterative", layer_caps={"conv9": 0.5})
    with pytest.raises(UserError, match=r"in \[0, 1\]"):
        make("depgraph", layer_caps={"features.0": 1.5})
