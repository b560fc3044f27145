"""DepGraph's one-shot procedure: progressive pruning steps with no training in between."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import torch
import torch.nn as nn

from decayprune import DecaySettings, Pruner, PruneSettings
from decayprune.criteria import create_criterion
from decayprune.models import create
from decayprune.structure import StructureSet, compact

X = torch.zeros(1, 3, 32, 32)


def _pruner(progressive_steps: int) -> Pruner:
    torch.manual_seed(0)
    model = create("resnet20", num_classes=10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.2, 1.5)
    settings = PruneSettings(
        method="depgraph",
        speed_up=2.0,
        iterative_steps=1,
        method_options={"progressive_steps": progressive_steps},
        decay=DecaySettings(policy="oneshot"),
    )
    return Pruner(model, X, settings, total_steps=100, steps_per_epoch=10)


def test_rescoring_equals_the_scores_of_the_physically_pruned_model() -> None:
    p = _pruner(4)
    s = p.structures
    removed = torch.zeros(s.num_structures, dtype=torch.bool)
    for layer in s.layers[:4]:
        removed[layer.first : layer.first + layer.size : 3] = True  # a third of four layer groups
    before = {n: q.detach().clone() for n, q in s.model.named_parameters()}
    scores = p.method._rescored(p.context, removed)
    assert all(torch.equal(before[n], q) for n, q in s.model.named_parameters())  # weights restored
    # The same groups removed for real: compact a copy and score what is left.
    twin = copy.deepcopy(s.model)
    ts = StructureSet(twin, X)
    ts.set_mask(removed)
    with torch.no_grad():
        for _layer, sl, ids in ts.parameter_slices():
            sl.param.index_fill_(sl.dim, sl.positions[removed[ids]], 0.0)
    compact(ts)
    after = create_criterion("group_norm").score(SimpleNamespace(structures=StructureSet(twin, X)))
    torch.testing.assert_close(scores[~removed], after, rtol=1e-5, atol=1e-7)


def test_progressive_steps_reach_the_budget_in_one_selection() -> None:
    for steps in (1, 8):
        p = _pruner(steps)
        p.context.step = p.schedule.steps[0]
        picked = p.method.select(p.context)
        assert picked is not None
        committed = torch.zeros(p.structures.num_structures, dtype=torch.bool)
        committed[picked] = True
        assert p.structures.macs(committed) <= p.macs_budget()
        assert p.structures.macs(committed) >= 0.97 * p.macs_budget()
