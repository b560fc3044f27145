"""Taylor criteria against finite differences of the loss and hand-computed products."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from criteria_testing import context, kill, scaled_loss

from decayprune import create_model
from decayprune.criteria import create_criterion, sum_over_slices

G = torch.Generator().manual_seed(0)
XV = torch.randn(12, 3, generator=G, dtype=torch.float64)
YV = torch.arange(12) % 2
BATCHES = [(XV[:6], YV[:6]), (XV[6:], YV[6:])]


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def derivatives(ctx, sid: int, batches: list, h: float = 2.0**-13) -> tuple[list[float], list[float]]:
    """Per batch, dL/dalpha and d2L/dalpha2 at alpha = 1 (central differences; h exact in float32)."""
    first, second = [], []
    for batch in batches:
        up, mid, down = (scaled_loss(ctx, sid, a, [batch]) for a in (1 + h, 1.0, 1 - h))
        first.append((up - down) / (2 * h))
        second.append((up - 2 * mid + down) / h**2)
    return first, second


def test_first_order_is_the_squared_loss_slope_of_scaling_the_group() -> None:
    ctx = context(mlp(), XV, BATCHES)
    scores = create_criterion("taylor", batches=2, normalize="none").score(ctx)
    for sid in range(ctx.structures.num_structures):
        slopes, _ = derivatives(ctx, sid, BATCHES)
        expected = sum(d**2 for d in slopes) / len(slopes)  # (sum g*w)^2, averaged over batches
        assert float(scores[sid]) == pytest.approx(expected, rel=1e-4, abs=1e-10)


def test_element_form_sums_squared_products_by_hand() -> None:
    net = mlp()
    ctx = context(net, XV, BATCHES[:1])
    scores = create_criterion("taylor", form="element", batches=1, normalize="none").score(ctx)
    net.zero_grad()
    ctx.loss_fn(net(XV[:6]), YV[:6]).backward()
    w1, b1, w2 = net[0].weight, net[0].bias, net[2].weight
    by_hand = ((w1 * w1.grad) ** 2).sum(1) + (b1 * b1.grad) ** 2 + ((w2 * w2.grad) ** 2).sum(0)
    torch.testing.assert_close(scores, by_hand.float())


def test_second_order_matches_the_loss_curvature_of_removing_the_group() -> None:
    ctx = context(mlp(), XV, BATCHES[:1])
    scores = create_criterion("taylor", order=2, batches=1, hutchinson_samples=3000, normalize="none").score(ctx)
    for sid in range(ctx.structures.num_structures):
        (d1,), (d2,) = derivatives(ctx, sid, BATCHES[:1], h=2.0**-10)
        expected = (-d1 + 0.5 * d2) ** 2  # removal: alpha 1 -> 0, dL ~ -L'(1) + L''(1) / 2
        assert float(scores[sid]) == pytest.approx(expected, rel=0.1, abs=1e-6)
    first = create_criterion("taylor", batches=1, normalize="none").score(ctx)
    assert not torch.allclose(first, scores, rtol=0.05)  # the quadratic term matters here


def test_taylor_counts_the_norm_layer_slices() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 1, bias=False), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)
    ).double()
    x = torch.randn(6, 1, 2, 2, dtype=torch.float64, generator=G)
    batches = [(x, torch.arange(6) % 2)]
    ctx = context(net, x, batches)
    with torch.no_grad():
        net[1].bias.copy_(torch.tensor([0.5, -0.2, 0.3]))
    scores = create_criterion("taylor", batches=1, normalize="none").score(ctx)
    for sid in range(3):
        (d1,), _ = derivatives(ctx, sid, batches)
        assert float(scores[sid]) == pytest.approx(d1**2, rel=1e-4)


def test_taylor_activation_by_hand() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    x = torch.randn(5, 1, 2, 2, generator=G)
    y = torch.arange(5) % 2
    ctx = context(net, x, [(x, y)])
    scores = create_criterion("taylor_activation", normalize="none", batches=1).score(ctx)
    net.eval()
    seen = {}

    def keep(_module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
        out.retain_grad()
        seen["a"] = out

    net[1].register_forward_hook(keep)
    ctx.loss_fn(net(x), y).backward()
    a = seen["a"]
    by_hand = (a * a.grad).mean((2, 3)).abs().mean(0)
    torch.testing.assert_close(scores, by_hand.detach())
    l2 = create_criterion("taylor_activation", batches=1, normalize="l2").score(ctx)
    torch.testing.assert_close(l2, (by_hand / by_hand.norm()).detach())


def test_taylor_activation_sees_the_value_before_an_inplace_relu() -> None:
    def build(inplace: bool) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.ReLU(inplace=inplace), nn.Flatten(), nn.Linear(12, 2)
        )

    x = torch.randn(5, 1, 2, 2, generator=G)
    batches = [(x, torch.arange(5) % 2)]
    plain = create_criterion("taylor_activation", batches=1).score(context(build(False), x, batches))
    inplace = create_criterion("taylor_activation", batches=1).score(context(build(True), x, batches))
    torch.testing.assert_close(plain, inplace)


def test_momentum_blends_successive_scores() -> None:
    ctx = context(mlp(), XV, BATCHES)
    one = create_criterion("taylor", batches=1).score(ctx)
    crit = create_criterion("taylor", batches=1, momentum=0.5)
    first = crit.score(ctx)
    ctx.calibration_data = BATCHES[1:]
    second = crit.score(ctx)
    other = create_criterion("taylor", batches=1).score(ctx)
    torch.testing.assert_close(first, one)
    torch.testing.assert_close(second, 0.5 * one + 0.5 * other)
    restored = create_criterion("taylor", batches=1, momentum=0.5)
    restored.load_state_dict(crit.state_dict())
    assert torch.equal(restored._running, second)


def test_taylor_options_are_checked() -> None:
    with pytest.raises(ValueError, match="order 2 needs form='group'"):
        create_criterion("taylor", order=2, form="element")
    with pytest.raises(ValueError, match="order"):
        create_criterion("taylor", order=3)
    assert create_criterion("taylor", order=2).needs == {"data", "grads", "hvp"}


@pytest.mark.parametrize("arch", ["resnet20", "concat_cnn"])
@pytest.mark.parametrize(
    "options",
    [
        {"name": "taylor"},
        {"name": "taylor", "order": 2},
        {"name": "taylor_activation", "normalize": "none"},
    ],
)
def test_taylor_scores_line_up_with_coupled_structures(arch: str, options: dict) -> None:
    options = dict(options)
    name = options.pop("name")
    torch.manual_seed(0)
    model = create_model(arch, num_classes=4, in_channels=3)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    batches = [(x, torch.arange(4))]
    ctx = context(model, x, batches)
    s = ctx.structures
    sid = int(torch.argmax(sum_over_slices(s, lambda r: torch.ones(r.shape[0]))))
    kill(ctx, sid)
    scores = create_criterion(name, batches=1, **options).score(ctx)
    assert scores.shape == (s.num_structures,) and bool(torch.isfinite(scores).all())
    assert float(scores[sid]) == pytest.approx(0.0, abs=1e-12)
    assert float(scores.max()) > 0


def test_first_order_in_a_residual_model_is_the_slope_of_scaling_the_whole_chain() -> None:
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=4, in_channels=3).double()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    batches = [(x, torch.arange(4))]
    ctx = context(model, x, batches)
    s = ctx.structures
    slices = sum_over_slices(s, lambda r: torch.ones(r.shape[0]))
    scores = create_criterion("taylor", batches=1, normalize="none").score(ctx)
    for sid in [int(torch.argmax(slices)), 0, s.num_structures - 1]:
        (d1,), _ = derivatives(ctx, sid, batches, h=2.0**-16)
        assert float(scores[sid]) == pytest.approx(d1**2, rel=1e-3, abs=1e-12)
