"""The Pruner starts no decay (selection, backfill, re-selection) that cannot end before the recovery margin."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from decayprune.config import DecaySettings, PruneSettings
from decayprune.models import create
from decayprune.pruner import Pruner


def test_constant_releases_never_start_a_decay_without_room_and_nothing_is_forced() -> None:
    torch.manual_seed(0)
    model = create("small_cnn", num_classes=10, in_channels=1)
    # Every decaying channel resists at once, so releases and backfills go on the whole run.
    decay = DecaySettings(policy="sp+sr", steps=10, t_rate=-1.0, t_len=0.0, window=1, cooldown=0)
    settings = PruneSettings(method="l1", target_macs_fraction=0.5, iterative_steps=2, decay=decay)
    total = 60
    pruner = Pruner(model, torch.zeros(1, 1, 8, 8), settings, total_steps=total)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    pruner.bind(opt)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    last_start = pruner.schedule.last_start
    assert last_start == total - 6 - 10
    for _ in range(total):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        pruner.after_backward()
        opt.step()
        pruner.after_step()
    pruner.finish()
    kinds = {e["kind"] for e in pruner.events}
    starts = [e["step"] for e in pruner.events if e["kind"] == "start"]
    releases = [e["step"] for e in pruner.events if e["kind"] == "release"]
    assert releases and "complete" in kinds
    assert max(starts) <= last_start and max(releases) <= last_start
    assert "forced" not in kinds  # every decay ended (at the latest at last_start + N) before the run did
    assert pruner.sr_stats and all(r["n"] > 0 for r in pruner.sr_stats)
