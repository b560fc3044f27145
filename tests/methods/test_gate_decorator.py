"""Gate Decorator: gated norms, Taylor gate scores, Tick-Tock, global threshold, DPM and compaction."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from decayprune import DecaySettings, GateDecorator, Pruner, PruneSettings, TrainSettings, create_model
from decayprune.methods import (
    TickTockSchedule,
    create_method,
    gate_taylor_scores,
    tick_selection,
    triangular_lr,
)
from decayprune.structure import PRODUCER, StructureSet
from decayprune.structure.channel_params import add_channel_multiplier

X = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.arange(16) % 10
BATCHES = [(X[:8], Y[:8]), (X[8:], Y[8:])]


def settings(policy: str = "oneshot", target: float = 0.5, steps: int = 4, **options: Any) -> PruneSettings:
    decay = DecaySettings(policy=policy, steps=steps, cooldown=4)
    opts = {"prune_ratio": 0.2, "tick_steps": 2, "tock_every": 2, "tock_steps": 2, **options}
    return PruneSettings(
        method="gate_decorator",
        target_macs_fraction=target,
        iterative_steps=2,
        end_epoch=30,
        decay=decay,
        method_options=opts,
    )


def make(
    model_name: str = "small_cnn", prune: PruneSettings | None = None, total: int = 40, lr: float = 0.05
) -> tuple[nn.Module, Pruner, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, in_channels=1)
    pruner = Pruner(model, X[:1], prune or settings(), total_steps=total, steps_per_epoch=1)
    optimizer = pruner.build_optimizer(TrainSettings(lr=lr, momentum=0.9, weight_decay=0.0, device="cpu"))
    return model, pruner, optimizer


def train(model: nn.Module, pruner: Pruner, optimizer: torch.optim.Optimizer, steps: int, each: Any = None) -> None:
    model.train()
    for _ in range(steps):
        x, y = BATCHES[pruner.step % 2]
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        pruner.after_backward()
        optimizer.step()
        pruner.after_step()
        if each is not None:
            each()


def rel_err_after_compaction(model: nn.Module, pruner: Pruner) -> float:
    pruner.finish()
    pruner.structures.zero_pruned_(pruner.optimizer)
    model.eval()
    with torch.no_grad():
        masked = model(X)
        pruner.compact()
        compacted = model(X)
    return float((compacted - masked).norm() / masked.norm())


# ---------------------------------------------------------------------------- gated norms


def test_gates_start_at_abs_gamma_and_leave_the_output_unchanged() -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(-2, 2)
                m.bias.uniform_(-1, 1)
    before = model(X)
    gammas = {n: m.weight.detach().abs().clone() for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    pruner = Pruner(model, X[:1], settings(), total_steps=40, steps_per_epoch=1)
    gates = pruner.method.gates
    assert [g.module_name for g in gates] == sorted(gammas, key=list(gammas).index)
    for g in gates:
        torch.testing.assert_close(g.param.detach(), gammas[g.module_name])
        assert torch.allclose(g.module.weight.abs(), torch.ones_like(g.module.weight))  # gamma / |gamma|
    assert (model(X) - before).norm() / before.norm() < 1e-6


def test_gates_join_their_structures_as_producer_slices() -> None:
    _model, pruner, optimizer = make()
    names = {sl.name for _l, sl, _i in pruner.structures.parameter_slices(PRODUCER)}
    assert {f"{g.module_name}.gate" for g in pruner.method.gates} <= names
    gate_group = optimizer.param_groups[1]
    assert {id(p) for p in gate_group["params"]} == {id(g.param) for g in pruner.method.gates}
    assert gate_group["weight_decay"] == 0.0


def test_taylor_score_equals_abs_gate_times_gradient_on_a_linear_case() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).eval()
    s = StructureSet(net, torch.randn(1, 3), ignore_classifier=False)
    g = add_channel_multiplier(s, "1", torch.tensor([0.5, -1.5, 2.0, 0.0]))
    x = torch.randn(5, 3)
    net(x).sum().backward()
    with torch.no_grad():
        bn = net[1]
        bn_out = F.batch_norm(net[0](x), bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps)
        # L = sum(W2 (g * bn)) + b  =>  dL/dg_c = sum_n bn[n, c] * sum_k W2[k, c]
        expected = (g.param * bn_out.sum(0) * net[2].weight.sum(0)).abs()
    scores = gate_taylor_scores([g], s.num_structures)
    torch.testing.assert_close(scores[g.ids].float(), expected[g.slice.positions], rtol=1e-5, atol=1e-7)
    assert scores[g.ids][3] == 0  # a zero gate scores zero


def test_coupled_channels_share_one_score_summed_over_their_gates() -> None:
    _model, pruner, _opt = make("resnet20", settings())
    s, gates = pruner.structures, pruner.method.gates
    coupled = [g for g in gates if g.layer.size != g.param.numel() or len({g.layer.index for g in gates}) < len(gates)]
    assert coupled, "resnet20 has residual-coupled norm layers"
    for g in gates:
        g.param.grad = torch.rand_like(g.param)
    scores = gate_taylor_scores(gates, s.num_structures)
    manual = torch.zeros(s.num_structures, dtype=torch.float64)
    for g in gates:
        for pos, sid in zip(g.slice.positions.tolist(), g.ids.tolist(), strict=True):
            manual[sid] += float((g.param.detach()[pos] * g.param.grad[pos]).abs())
    torch.testing.assert_close(scores, manual)
    per_layer = {}
    for g in gates:
        per_layer.setdefault(g.layer.index, []).append(g)
    assert max(len(v) for v in per_layer.values()) > 1  # several gates in one structure group


# ---------------------------------------------------------------------------- Tick-Tock


def test_tick_tock_schedule_and_triangular_lr() -> None:
    s = TickTockSchedule(start=3, tick_steps=2, tock_every=2, tock_steps=3)
    assert s.phase(2) is None
    kinds = [(p.kind, p.index, p.position, p.last) for p in (s.phase(k) for k in range(3, 13))]
    assert kinds[:4] == [("tick", 0, 0, False), ("tick", 0, 1, True), ("tick", 1, 0, False), ("tick", 1, 1, True)]
    assert kinds[4:7] == [("tock", 0, 0, False), ("tock", 0, 1, False), ("tock", 0, 2, True)]
    assert kinds[7] == ("tick", 2, 0, False)
    assert [triangular_lr(k, 3, 0.001, 0.01) for k in range(3)] == pytest.approx([0.001, 0.01, 0.001])
    with pytest.raises(ValueError, match="tick_steps >= 1"):
        TickTockSchedule(start=1, tick_steps=0, tock_every=1, tock_steps=0)


def test_tick_freezes_weights_trains_gates_and_restores_the_learning_rate() -> None:
    model, pruner, optimizer = make(prune=settings(tick_steps=3, lr_min=0.02, lr_max=0.1))
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if not n.endswith(".gate")}
    gates = [g.param.detach().clone() for g in pruner.method.gates]
    lrs = []
    train(model, pruner, optimizer, 2, each=lambda: lrs.append([g["lr"] for g in optimizer.param_groups]))
    for n, p in model.named_parameters():
        if not n.endswith(".gate"):
            torch.testing.assert_close(p.detach(), weights[n], msg=n)
    assert any(not torch.equal(g.param.detach(), before) for g, before in zip(pruner.method.gates, gates, strict=True))
    assert lrs == [[0.05, 0.05], [0.05, 0.05]]  # the optimizer's own rate outside the step


def test_tock_applies_the_l1_penalty_and_triangular_lr() -> None:
    model, pruner, optimizer = make(
        prune=settings(tick_steps=1, tock_every=1, tock_steps=3, lr_min=0.01, lr_max=0.03, sparse_lambda=0.5)
    )
    seen = []
    original = optimizer.step

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append([g["lr"] for g in optimizer.param_groups])
        return original(*args, **kwargs)

    optimizer.step = spy  # type: ignore[method-assign]
    train(model, pruner, optimizer, 4)
    assert seen[0] == [0.0, 0.01]  # tick: weights frozen, gates at lr_min
    assert seen[1:] == [[0.01, 0.01], [0.03, 0.03], [0.01, 0.01]]  # tock: triangle over all weights
    # the penalty: a tock gradient of a gate includes sparse_lambda * sign(g)
    optimizer.zero_grad()
    for g in pruner.method.gates:
        g.param.grad = torch.zeros_like(g.param)
    pruner.context.step = 1  # step 2 is a tock
    pruner.method.after_backward(pruner.context)
    pruner.method.after_step(pruner.context)
    for g in pruner.method.gates:
        torch.testing.assert_close(g.param.grad, 0.5 * torch.sign(g.param.detach()))


def test_a_tick_prunes_floor_p_of_the_remaining_channels_with_a_per_layer_minimum() -> None:
    _model, pruner, _opt = make(prune=settings(target=0.05, prune_ratio=0.3, min_channels=2))
    ctx, s = pruner.context, pruner.structures
    first = min(s.layers, key=lambda layer: layer.size)
    scores = torch.arange(s.num_structures, dtype=torch.float64) + 100.0
    scores[first.first : first.first + first.size] = 0.0  # one layer holds every lowest score
    picked = tick_selection(ctx, scores, 0.3, min_channels=2)
    assert picked.numel() == int(0.3 * s.num_structures) > first.size
    in_first = (s.layer_of[picked] == first.index).sum()
    assert int(in_first) == first.size - 2  # the layer keeps its minimum, the rest go by score order
    # the MACs floor stops a tick early
    capped = tick_selection(ctx, scores, 0.3, min_channels=2, macs_floor=s.macs() * 0.99)
    mask = torch.zeros(s.num_structures, dtype=torch.bool)
    mask[capped[:-1]] = True
    assert 0 < capped.numel() < picked.numel() and s.macs(mask) > s.macs() * 0.99


def test_each_tick_prunes_floor_p_remaining_until_the_target() -> None:
    model, pruner, optimizer = make(prune=settings(target=0.3, prune_ratio=0.25, tock_steps=0, tick_steps=2), total=60)
    counts = []
    train(model, pruner, optimizer, 12, each=lambda: counts.append(int(pruner.engine.committed().sum())))
    s = pruner.structures
    n = s.num_structures
    assert counts[1] == int(0.25 * n)  # end of the first tick
    assert counts[3] == counts[1] + int(0.25 * (n - counts[1]))
    assert s.macs(pruner.engine.committed()) <= pruner.final_macs
    assert pruner.method._done


# ---------------------------------------------------------------------------- DPM and compaction


def test_with_sp_the_selected_channels_decay_linearly() -> None:
    n_steps = 5
    model, pruner, optimizer = make(prune=settings("sp", steps=n_steps, tock_steps=0))
    train(model, pruner, optimizer, 2)  # first tick ends: selection
    decaying = pruner.engine.decaying.nonzero().flatten()
    assert decaying.numel() > 0
    l_init = pruner.engine.l_init[decaying]
    gate = pruner.method.gates[0]
    for n in range(1, n_steps + 1):
        train(model, pruner, optimizer, 1)
        norms = pruner.structures.producer_norms().cpu()[decaying]
        torch.testing.assert_close(norms, l_init * (n_steps - n) / n_steps, atol=1e-5, rtol=1e-4)
    assert bool(pruner.structures.pruned[decaying].all())
    dead = [
        pos
        for pos, sid in zip(gate.slice.positions.tolist(), gate.ids.tolist(), strict=True)
        if sid in set(decaying.tolist())
    ]
    assert all(float(gate.param.detach()[p]) == 0.0 for p in dead)


@pytest.mark.parametrize("policy", ["oneshot", "sp", "sp+sr"])
@pytest.mark.parametrize("model_name", ["small_cnn", "resnet20"])
def test_compaction_is_exact_and_folds_the_gates(policy: str, model_name: str) -> None:
    model, pruner, optimizer = make(model_name, settings(policy, target=0.4), total=40, lr=0.02)
    train(model, pruner, optimizer, 30)
    assert pruner.structures.macs(pruner.engine.committed()) <= pruner.final_macs * 1.01
    assert rel_err_after_compaction(model, pruner) < 1e-5
    assert not any(n.endswith(".gate") for n, _ in model.named_parameters())
    assert pruner.method.gates == []


def test_folding_is_exact_with_arbitrary_gates() -> None:
    model, pruner, _opt = make("resnet20")
    with torch.no_grad():
        for g in pruner.method.gates:
            g.param.uniform_(-2, 2)
    model.eval()
    gated = model(X)
    pruner.context.fold_channel_multipliers()
    folded = model(X)
    assert float((folded - gated).norm() / gated.norm()) < 1e-5


def test_releases_are_backfilled_from_the_last_tick_scores() -> None:
    prune = settings("sp+sr", steps=8, tock_steps=0)
    prune.decay.t_rate, prune.decay.t_len, prune.decay.cooldown = -1e9, 0.0, 1000  # everything resists
    prune.decay.window, prune.recovery_fraction = 1, 0.0  # release after one decay step; 30 + 8 fits in 40
    model, pruner, optimizer = make(prune=prune)
    train(model, pruner, optimizer, 2)
    first = pruner.engine.decaying.clone()
    target = pruner.method._target_macs
    seen = []
    train(
        model,
        pruner,
        optimizer,
        1,
        each=lambda: seen.append((pruner.engine.releases, pruner.engine.committed().clone())),
    )
    releases, committed = seen[0]
    assert releases == int(first.sum())  # every decaying channel resisted and was released at step 3
    assert not bool((committed & first).any())  # released ones sit out their cool-down ...
    assert committed.any() and pruner.structures.macs(committed) <= target  # ... replaced at once: target holds


# ---------------------------------------------------------------------------- options and seams


def test_options_are_validated_with_clear_errors() -> None:
    with pytest.raises(ValueError, match="prune_ratio"):
        create_method("gate_decorator", prune_ratio=0)
    with pytest.raises(ValueError, match="lr_min and lr_max"):
        create_method("gate_decorator", lr_min=0.001)
    with pytest.raises(ValueError, match="lr_min .* must not exceed"):
        GateDecorator(lr_min=0.1, lr_max=0.01)
    with pytest.raises(ValueError, match="tick_step"):
        PruneSettings(method="gate_decorator", target_macs_fraction=0.5, method_options={"tick_step": 3})
    with pytest.raises(ValueError, match="does not rank by a criterion"):
        PruneSettings(method="gate_decorator", target_macs_fraction=0.5, criterion="l1_filter")
    with pytest.raises(ValueError, match="iterative_steps >= 2"):
        Pruner(
            create_model("small_cnn", num_classes=10, in_channels=1),
            X[:1],
            PruneSettings(method="gate_decorator", target_macs_fraction=0.5, iterative_steps=1),
            total_steps=10,
        )
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="needs affine norm layers"):
        Pruner(
            mlp, torch.zeros(1, 4), PruneSettings(method="gate_decorator", target_macs_fraction=0.5), total_steps=400
        )


def test_state_dict_round_trip() -> None:
    model, pruner, optimizer = make(prune=settings(tock_steps=0))
    train(model, pruner, optimizer, 3)
    state = pruner.method.state_dict()
    fresh = create_method("gate_decorator", prune_ratio=0.2)
    fresh.load_state_dict(state)
    assert fresh.state_dict()["target_macs"] == state["target_macs"] and fresh.ticks_done == 1
    torch.testing.assert_close(fresh._scores, pruner.method._scores)


def test_plans_built_before_a_multiplier_is_added_see_it() -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    s = StructureSet(model, X[:1])
    s.producer_norms()  # builds and caches the plans
    gates = [add_channel_multiplier(s, name) for name in ("features.1", "features.4")]
    params = {id(t) for plan in s.flat_plans(PRODUCER) for t in plan.params}
    assert all(id(g.param) in params for g in gates)


def test_method_state_survives_a_pickle_free_checkpoint() -> None:
    import json

    from decayprune.train.checkpoint import flatten_state, unflatten_state

    model, pruner, optimizer = make(prune=settings(tock_steps=0))
    train(model, pruner, optimizer, 3)
    tensors, skeleton = flatten_state(pruner.state_dict())
    restored = unflatten_state(tensors, json.loads(json.dumps(skeleton)))
    _m2, fresh, _o2 = make(prune=settings(tock_steps=0))
    fresh.load_state_dict(restored)
    assert fresh.method.state_dict()["target_macs"] == pruner.method.state_dict()["target_macs"]
    torch.testing.assert_close(fresh.method._last_scores, pruner.method._last_scores)
