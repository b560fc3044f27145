"""Base pruning methods: registry, budget filling, scores and DepGraph's sparse learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from decayprune.criteria import create_criterion, layer_normalize
from decayprune.methods import (
    DepGraph,
    L1Pruning,
    PruningMethod,
    RandomPruning,
    create_method,
    fill_to_budget,
    list_methods,
    method_class,
    register_method,
)
from decayprune.models import create
from decayprune.pruner import Pruner, PruneSettings
from decayprune.structure import PRODUCER

X1 = torch.zeros(1, 1, 8, 8)


def make_pruner(
    method: str = "depgraph", width_multiple: int = 1, iterative_steps: int = 1, total_steps: int = 100, **options
) -> Pruner:
    torch.manual_seed(0)
    model = create("small_cnn", num_classes=10, in_channels=1)
    settings = PruneSettings(
        method=method,
        method_options=options,
        target_macs_fraction=0.5,
        width_multiple=width_multiple,
        iterative_steps=iterative_steps,
    )
    data = (
        [(X1.repeat(8, 1, 1, 1), torch.arange(8))]
        if method in {"thinet", "spectral_radius", "max_redundancy"}
        else None
    )  # they read data
    return Pruner(model, X1, settings, total_steps=total_steps, steps_per_epoch=10, calibration_data=data)


def regularize(p: Pruner, step: int) -> None:
    p.context.step = step
    p.method.after_backward(p.context)


@pytest.fixture(scope="module")
def pruner() -> Pruner:
    return make_pruner()


def per_layer_counts(pruner: Pruner, mask: torch.Tensor) -> dict[str, int]:
    return {layer.name: int(mask[layer.first : layer.first + layer.size].sum()) for layer in pruner.structures.layers}


# ---------------------------------------------------------------------------- registry


def test_registry_lists_the_builtin_methods() -> None:
    assert {"depgraph", "iterative", "l1", "random"} <= set(list_methods())
    assert list_methods() == sorted(list_methods())
    assert method_class("depgraph") is DepGraph
    assert method_class("l1") is L1Pruning and method_class("random") is RandomPruning


def test_unknown_method_suggests_a_close_name() -> None:
    with pytest.raises(ValueError, match="did you mean 'depgraph'") as info:
        method_class("depgrap")
    assert "allowed" in str(info.value) and "l1" in str(info.value)


def test_duplicate_registration_is_refused() -> None:
    class Another(PruningMethod):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_method("depgraph")(Another)
    assert method_class("depgraph") is DepGraph


def test_create_method_checks_options() -> None:
    assert create_method("depgraph", sparse_lambda=1e-4).options.sparse_lambda == 1e-4
    with pytest.raises(ValueError, match="bad options.*depgraph"):
        create_method("depgraph", no_such_option=1)
    with pytest.raises(ValueError, match="sparse_lambda"):
        create_method("depgraph", sparse_lambda=-1.0)
    with pytest.raises(ValueError, match="ranking"):
        create_method("l1", ranking="sideways")
    with pytest.raises(ValueError, match="max_layer_ratio"):
        create_method("random", max_layer_ratio=0.0)


@pytest.mark.parametrize("name", [m for m in list_methods() if hasattr(method_class(m), "scores")])
def test_every_method_scores_every_structure(name: str) -> None:
    p = make_pruner(name, iterative_steps=2, total_steps=1000)  # Tick-Tock (gate_decorator) needs two selection points
    scores = p.method.scores(p.context)
    assert scores.shape == (p.structures.num_structures,)
    assert torch.isfinite(scores).all() and (scores >= 0).all()


# ---------------------------------------------------------------------------- budget filling


def test_fill_to_budget_meets_the_target_minimally(pruner: Pruner) -> None:
    s = pruner.structures
    scores = pruner.method.scores(pruner.context)
    target = 0.5 * pruner.base_macs
    ids = fill_to_budget(pruner.context, scores, target, torch.ones(s.num_structures, dtype=torch.bool))
    assert ids.numel() > 0 and ids.unique().numel() == ids.numel()
    mask = torch.zeros(s.num_structures, dtype=torch.bool)
    mask[ids] = True
    assert s.macs(mask) <= target
    # Smallest sufficient: without its highest-scored pick the budget would not be met.
    last = ids[scores[ids].argmax()]
    mask[last] = False
    assert s.macs(mask) > target
    # Every picked structure scores no higher than any structure left in the same layer
    # (global ranking, before any layer reaches its cap).
    counts = per_layer_counts(pruner, mask)
    for layer in s.layers:
        picked = torch.isin(layer.ids, ids)
        if picked.any() and (~picked).any() and counts[layer.name] < int(0.9 * layer.size) - 1:
            assert scores[layer.ids[picked]].max() <= scores[layer.ids[~picked]].min()


def test_fill_to_budget_already_met_returns_nothing(pruner: Pruner) -> None:
    s = pruner.structures
    ids = fill_to_budget(
        pruner.context,
        pruner.method.scores(pruner.context),
        2 * pruner.base_macs,
        torch.ones(s.num_structures, dtype=torch.bool),
    )
    assert ids.numel() == 0


@pytest.mark.parametrize("ranking", ["global", "layer"])
def test_fill_to_budget_respects_layer_caps(pruner: Pruner, ranking: str) -> None:
    s = pruner.structures
    # An unreachable target: every layer is cut to its cap and no further.
    ids = fill_to_budget(
        pruner.context,
        pruner.method.scores(pruner.context),
        0.01 * pruner.base_macs,
        torch.ones(s.num_structures, dtype=torch.bool),
        ranking=ranking,
        max_layer_ratio=0.5,
    )
    mask = torch.zeros(s.num_structures, dtype=torch.bool)
    mask[ids] = True
    for layer in s.layers:
        assert per_layer_counts(pruner, mask)[layer.name] == int(layer.size * 0.5)


def test_fill_to_budget_only_picks_candidates(pruner: Pruner) -> None:
    s = pruner.structures
    candidates = torch.zeros(s.num_structures, dtype=torch.bool)
    candidates[::2] = True
    ids = fill_to_budget(pruner.context, pruner.method.scores(pruner.context), 0.6 * pruner.base_macs, candidates)
    assert ids.numel() > 0 and candidates[ids].all()


def test_layer_ranking_prunes_layers_evenly(pruner: Pruner) -> None:
    s = pruner.structures
    ids = fill_to_budget(
        pruner.context,
        pruner.method.scores(pruner.context),
        0.5 * pruner.base_macs,
        torch.ones(s.num_structures, dtype=torch.bool),
        ranking="layer",
    )
    mask = torch.zeros(s.num_structures, dtype=torch.bool)
    mask[ids] = True
    assert s.macs(mask) <= 0.5 * pruner.base_macs
    fractions = [per_layer_counts(pruner, mask)[layer.name] / layer.size for layer in s.layers]
    assert max(fractions) - min(fractions) <= 1.0 / min(layer.size for layer in s.layers) + 1e-9
    with pytest.raises(ValueError, match="ranking"):
        fill_to_budget(
            pruner.context,
            pruner.method.scores(pruner.context),
            0.5 * pruner.base_macs,
            torch.ones(s.num_structures, dtype=torch.bool),
            ranking="diagonal",
        )


@pytest.mark.parametrize("ranking", ["global", "layer"])
def test_fill_to_budget_keeps_widths_that_are_multiples(ranking: str) -> None:
    p = make_pruner(width_multiple=8)
    s = p.structures
    target = 0.5 * p.base_macs
    ids = fill_to_budget(
        p.context, p.method.scores(p.context), target, torch.ones(s.num_structures, dtype=torch.bool), ranking=ranking
    )
    mask = torch.zeros(s.num_structures, dtype=torch.bool)
    mask[ids] = True
    counts = per_layer_counts(p, mask)
    assert sum(counts.values()) > 0
    kept = {layer.name: layer.size - counts[layer.name] for layer in s.layers}
    assert all(k % 8 == 0 for k in kept.values()), kept
    assert s.macs(mask) <= target


# ---------------------------------------------------------------------------- scores


def test_layer_normalize_gives_unit_layer_means() -> None:
    scores = torch.tensor([1.0, 3.0, 10.0, 2.0, 4.0, 6.0])
    layer_of = torch.tensor([0, 0, 1, 2, 2, 2])
    out = layer_normalize(scores, layer_of, 3)
    torch.testing.assert_close(out, torch.tensor([0.5, 1.5, 1.0, 0.5, 1.0, 1.5]))
    means = torch.zeros(3).index_add_(0, layer_of, out) / torch.bincount(layer_of)
    torch.testing.assert_close(means, torch.ones(3))


def test_depgraph_scores_are_mean_group_norms(pruner: Pruner) -> None:
    s = pruner.structures
    model = s.model
    raw = create_criterion("group_norm", normalize=False).score(pruner.context)
    first = next(layer for layer in s.layers if layer.name == "features.0")
    conv, bn, nxt = model.features[0], model.features[1], model.features[3]
    with torch.no_grad():
        hand = (conv.weight.pow(2).sum((1, 2, 3)) + bn.weight.pow(2) + nxt.weight.pow(2).sum((0, 2, 3))) / 3
    torch.testing.assert_close(raw[first.first : first.first + first.size], hand, rtol=1e-5, atol=0)
    with_beta = create_criterion("group_norm", normalize=False, bias=True).score(pruner.context)
    with torch.no_grad():
        hand = (3 * hand + bn.bias.pow(2)) / 4  # BN beta is a fourth slice with bias=True
    torch.testing.assert_close(with_beta[first.first : first.first + first.size], hand, rtol=1e-5, atol=0)
    normalized = create_criterion("group_norm", normalize=True).score(pruner.context)
    torch.testing.assert_close(normalized, layer_normalize(raw, s.layer_of, len(s.layers)))


def test_l1_scores_sum_absolute_filter_weights(pruner: Pruner) -> None:
    s = pruner.structures
    scores = create_criterion("l1_filter").score(pruner.context)
    for layer in s.layers:
        conv = layer.root
        hand = conv.weight.detach().abs().sum((1, 2, 3))
        torch.testing.assert_close(scores[layer.first : layer.first + layer.size], hand, rtol=1e-5, atol=0)


def test_random_scores_follow_their_seed(pruner: Pruner) -> None:
    a = create_criterion("random", seed=3).score(pruner.context)
    b = create_criterion("random", seed=3).score(pruner.context)
    c = create_criterion("random", seed=4).score(pruner.context)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_depgraph_sparse_learning_adds_group_lasso_gradient() -> None:
    lam = 0.1
    p = make_pruner("depgraph", sparse_lambda=lam, regularizer="group_lasso")
    s, model = p.structures, p.structures.model
    first = next(layer for layer in s.layers if layer.name == "features.0")
    committed_id = first.first + 3
    p.engine.start(torch.tensor([committed_id]), step=0)  # a decaying structure gets no penalty
    x = torch.randn(4, 1, 8, 8)
    F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    grads = {n: q.grad.clone() for n, q in model.named_parameters()}
    regularize(p, step=1)
    conv, bn, nxt = model.features[0], model.features[1], model.features[3]
    with torch.no_grad():
        norm = (
            conv.weight.pow(2).sum((1, 2, 3)) + bn.weight.pow(2) + bn.bias.pow(2) + nxt.weight.pow(2).sum((0, 2, 3))
        ).sqrt()
        coef = lam / norm
        coef[3] = 0.0
        torch.testing.assert_close(
            conv.weight.grad - grads["features.0.weight"], coef.view(-1, 1, 1, 1) * conv.weight, rtol=1e-4, atol=1e-7
        )
        torch.testing.assert_close(bn.weight.grad - grads["features.1.weight"], coef * bn.weight, rtol=1e-4, atol=1e-7)
        # The consumer columns of the next conv get the penalty of the channel they read, on top of
        # the penalty of that conv's own rows.
        own = s.group_sq_norms().sqrt()
        nxt_layer = next(layer for layer in s.layers if layer.name == "features.3")
        row_coef = lam / own[nxt_layer.first : nxt_layer.first + nxt_layer.size]
        expected = coef.view(1, -1, 1, 1) * nxt.weight + row_coef.view(-1, 1, 1, 1) * nxt.weight
        torch.testing.assert_close(nxt.weight.grad - grads["features.3.weight"], expected, rtol=1e-4, atol=1e-7)
    # Outside the pruning phase nothing is added.
    grads = {n: q.grad.clone() for n, q in model.named_parameters()}
    regularize(p, step=p.schedule.steps[-1] + 1)
    assert all(torch.equal(grads[n], q.grad) for n, q in model.named_parameters())


def test_depgraph_without_sparse_learning_leaves_gradients() -> None:
    p = make_pruner("depgraph")
    model = p.structures.model
    F.cross_entropy(model(torch.randn(2, 1, 8, 8)), torch.tensor([0, 1])).backward()
    grads = {n: q.grad.clone() for n, q in model.named_parameters()}
    regularize(p, step=1)
    assert all(torch.equal(grads[n], q.grad) for n, q in model.named_parameters())


def test_l1_uses_only_producing_weights(pruner: Pruner) -> None:
    names = {sl.name for _l, sl, _i in pruner.structures.parameter_slices(PRODUCER)}
    assert "features.1.weight" in names  # BN gamma is a producer slice ...
    before = create_criterion("l1_filter").score(pruner.context)
    bn = pruner.structures.model.features[1]
    with torch.no_grad():
        saved = bn.weight.clone()
        bn.weight.mul_(10.0)  # ... but does not change the L1 filter score
    try:
        assert torch.equal(create_criterion("l1_filter").score(pruner.context), before)
    finally:
        with torch.no_grad():
            bn.weight.copy_(saved)
