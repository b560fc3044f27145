"""``backfill: count``: a self-rectifying release is replaced one for one, whatever its MACs."""

from __future__ import annotations

import torch

from decayprune import DecaySettings, Pruner, PruneSettings, create_model


def _pruner(backfill: str) -> Pruner:
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    settings = PruneSettings(
        method="depgraph",
        target_macs_fraction=0.4,
        iterative_steps=1,
        method_options={"backfill": backfill},
        decay=DecaySettings(policy="sp+sr", steps=5, cooldown=100),
    )
    return Pruner(model, torch.zeros(1, 1, 8, 8), settings, total_steps=100, steps_per_epoch=10)


def test_count_backfill_picks_one_structure_per_released_one() -> None:
    p = _pruner("count")
    ctx = p.context
    ctx.step = p.schedule.steps[0]
    first = p.method.select(ctx)
    assert first is not None
    p.engine.start(first, step=ctx.step)
    p.method.on_release(ctx, first[:3].tolist())  # the method's view of three releases
    ctx.step += 1
    refill = p.method.select(ctx)
    assert refill is not None and refill.numel() == 3
    assert not bool(torch.isin(refill, first).any())  # fresh structures, lowest scores first
    scores = p.method.scores(ctx)
    free = torch.ones(p.structures.num_structures, dtype=torch.bool)
    free[first] = False
    assert scores[refill].max() <= scores[free].sort().values[3 - 1] + 1e-12


def test_budget_backfill_adds_nothing_while_the_budget_holds() -> None:
    p = _pruner("budget")
    ctx = p.context
    ctx.step = p.schedule.steps[0]
    first = p.method.select(ctx)
    assert first is not None
    p.engine.start(first, step=ctx.step)
    p.method.on_release(ctx, [])
    ctx.step += 1
    assert p.method.select(ctx) is None  # nothing released from the engine: the budget already holds
