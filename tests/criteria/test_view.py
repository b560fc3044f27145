"""Criteria see a ScoringView only: units, model, calibration batches and the loss."""

from __future__ import annotations

import torch

from decayprune import Pruner, PruneSettings, create_model
from decayprune.criteria import Criterion, ScoringView, register_criterion
from decayprune.registry import CRITERIA


def test_a_criterion_gets_a_plain_view_without_the_engine() -> None:
    seen: list[ScoringView] = []

    @register_criterion("test_view_spy")
    class Spy(Criterion):
        def score(self, view):
            seen.append(view)
            return torch.arange(view.units.num_structures, dtype=torch.float32)

    try:
        batches = [(torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))]
        settings = PruneSettings(method="iterative", criterion="test_view_spy", target_macs_fraction=0.5)
        model = create_model("small_cnn", in_channels=1)
        pruner = Pruner(model, torch.zeros(1, 1, 8, 8), settings, total_steps=20, calibration_data=batches)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        pruner.bind(opt)
        model(torch.zeros(1, 1, 8, 8)).sum().backward()
        pruner.after_backward()
        opt.step()
        pruner.after_step()  # step 1: a selection point
    finally:
        CRITERIA.remove("test_view_spy")
    assert seen and type(seen[0]) is ScoringView
    view = seen[0]
    assert view.model is model and view.units is pruner.structures and view.groups == pruner.structures.layers
    assert not any(hasattr(view, name) for name in ("committed", "available", "start", "optimizer", "schedule"))
    (inputs, labels), *_ = list(view.calibration_batches(1))
    assert torch.equal(inputs, batches[0][0]) and torch.equal(labels, batches[0][1])
    assert view.with_batches(None).calibration_data is None
