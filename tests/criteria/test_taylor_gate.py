"""Taylor's gate-after-BN variant (Molchanov 2019, method 22) against an explicit gate, in train mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from criteria_testing import context, kill

from decayprune import UserError, create_model
from decayprune.criteria import create_criterion


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2),
    ).double()  # fmt: skip


def test_gate_score_equals_the_squared_gradient_of_an_explicit_gate_in_train_mode() -> None:
    model = net()
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(6, 2, 5, 5, generator=gen, dtype=torch.float64), torch.arange(6) % 2) for _ in range(2)]
    ctx = context(model, batches[0][0], batches)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    scores = create_criterion("taylor", form="bn", batches=2, normalize="none").score(ctx)
    for key, value in stats.items():
        assert torch.equal(model.state_dict()[key], value), key  # scoring leaves the statistics as found
    gates = {model[1]: torch.ones(4, dtype=torch.float64, requires_grad=True),
             model[4]: torch.ones(3, dtype=torch.float64, requires_grad=True)}  # fmt: skip
    hooks = [bn.register_forward_hook(lambda m, _i, out: out * gates[m].view(1, -1, 1, 1)) for bn in gates]
    by_hand = {bn: torch.zeros(g.numel(), dtype=torch.float64) for bn, g in gates.items()}
    model.train()
    for x, y in batches:
        for g in gates.values():
            g.grad = None
        nn.functional.cross_entropy(model(x), y).backward()
        for bn, g in gates.items():
            by_hand[bn] += g.grad**2
    for h in hooks:
        h.remove()
    for group in ctx.groups:
        bn = group.norm_sites()[0][0]
        torch.testing.assert_close(scores[group.span].double(), (by_hand[bn] / 2), rtol=1e-5, atol=1e-9)


def test_gate_form_refuses_order_two_and_groups_without_a_batch_norm() -> None:
    with pytest.raises(ValueError, match="order 2 needs form='group'"):
        create_criterion("taylor", form="bn", order=2)
    mlp = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(4, 3)
    with pytest.raises(UserError, match="BatchNorm"):
        create_criterion("taylor", form="bn", batches=1).score(context(mlp, x, [(x, torch.arange(4) % 2)]))


@pytest.mark.parametrize("arch", ["resnet20", "concat_cnn"])
def test_gate_form_zeroed_channel_scores_lowest(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=4, in_channels=3)
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    ctx = context(model, x, [(x, torch.arange(8) % 4)])
    kill(ctx, 3)
    scores = create_criterion("taylor", form="bn", batches=1, normalize="none").score(ctx)
    assert float(scores[3]) == 0.0 and float(scores.min()) == 0.0 and float(scores.max()) > 0
    assert int((scores <= 0).sum()) == 1
