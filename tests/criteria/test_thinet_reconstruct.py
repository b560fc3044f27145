"""ThiNet's least-squares reconstruction lowers the next layer's output error against plain removal."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from criteria_testing import context, kill

from decayprune import create_model
from decayprune.criteria import create_criterion, thinet_reconstruct


def consumer_error(model: nn.Module, consumer: nn.Module, x: torch.Tensor, reference: torch.Tensor) -> float:
    seen: list[torch.Tensor] = []
    handle = consumer.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return float((seen[-1] - reference).norm() / reference.norm())


@pytest.mark.parametrize("arch", ["small_cnn", "concat_cnn"])
def test_reconstruction_lowers_the_next_layers_output_error(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=4, in_channels=3).eval()
    x = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ctx = context(model, x, [(x[:16], torch.zeros(16, dtype=torch.long)), (x[16:], torch.zeros(16, dtype=torch.long))])
    s = ctx.structures
    group = next(g for g in s.layers if any(isinstance(sl.owner, nn.Conv2d) for sl in g.consumers))
    order = create_criterion("thinet", batches=2).score(ctx)[group.span].argsort()
    removed = torch.zeros(s.num_structures, dtype=torch.bool)
    removed[group.first + order[: group.size // 2]] = True  # ThiNet's greedy half of the first layer
    consumer = next(sl.owner for sl in group.consumers if isinstance(sl.owner, nn.Conv2d))
    with torch.no_grad():
        reference = []
        handle = consumer.register_forward_hook(lambda _m, _i, out: reference.append(out.detach()))
        model(x)
        handle.remove()
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    for sid in removed.nonzero().flatten().tolist():
        kill(ctx, sid)
    plain = consumer_error(model, consumer, x, reference[0])
    model.load_state_dict(saved)
    scales = thinet_reconstruct(ctx.scoring, removed, batches=2, entries=2048)
    assert consumer in scales and scales[consumer].numel() == group.size - group.size // 2
    for sid in removed.nonzero().flatten().tolist():
        kill(ctx, sid)
    rebuilt = consumer_error(model, consumer, x, reference[0])
    print(f"{arch}: next-layer rel. error {plain:.4f} plain, {rebuilt:.4f} reconstructed")
    assert rebuilt < plain, (rebuilt, plain)


def test_reconstruction_with_nothing_removed_changes_nothing() -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=4, in_channels=3)
    x = torch.randn(8, 3, 8, 8)
    ctx = context(model, x, [(x, torch.zeros(8, dtype=torch.long))])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert thinet_reconstruct(ctx.scoring, torch.zeros(ctx.structures.num_structures, dtype=torch.bool)) == {}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
