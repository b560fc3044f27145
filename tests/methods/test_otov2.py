"""The ``otov2`` method: DHSPG with every zeroing policy, budget, compaction, options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from decayprune import ConfigError, DecaySettings, Pruner, PruneSettings, TrainSettings, create_model, load_config
from decayprune.decay import decay_norm
from decayprune.methods import DHSPG, OTOv2, create_method

STEPS = 60
X = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.arange(64) % 10


def run(
    policy: str,
    *,
    target: float = 0.2,
    train: TrainSettings | None = None,
    model_name: str = "small_cnn",
    check_each_step=None,
    **options,
) -> tuple[torch.nn.Module, Pruner, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, in_channels=1)
    decay = (
        DecaySettings(policy=policy, steps=5, t_rate=0.0, t_len=0.5, cooldown=10_000)
        if policy == "sp+sr"
        else DecaySettings(policy=policy, steps=5)
    )
    settings = PruneSettings(
        method="otov2", target_macs_fraction=target, iterative_steps=3, decay=decay, method_options=options
    )
    pruner = Pruner(model, X[:1], settings, total_steps=STEPS, steps_per_epoch=10)
    opt = pruner.build_optimizer(train or TrainSettings(lr=0.05, momentum=0.9, weight_decay=5e-4, device="cpu"))
    for step in range(STEPS):
        sl = slice((step % 4) * 16, (step % 4 + 1) * 16)
        loss = F.cross_entropy(model(X[sl]), Y[sl])
        opt.zero_grad()
        loss.backward()
        pruner.after_backward()
        opt.step()
        pruner.after_step()
        if check_each_step is not None:
            check_each_step(pruner)
    return model, pruner, opt


@pytest.mark.parametrize("policy", ["oneshot", "sp", "sp+sr"])
def test_each_policy_meets_the_macs_target_and_compacts_exactly(policy: str) -> None:
    model, pruner, opt = run(policy)
    assert isinstance(opt, DHSPG) and opt.partitioned
    pruner.finish()  # decays still running (late backfills) complete now
    model.eval()
    with torch.no_grad():
        before = model(X)
    pruner.compact()
    with torch.no_grad():
        after = model(X)
    reached = pruner.structures.macs() / pruner.base_macs
    assert 0.2 - 0.03 <= reached <= 0.2 + 0.01
    assert float((after - before).norm() / before.norm()) < 1e-5
    kinds = {e["kind"] for e in pruner.events}
    assert kinds == {"oneshot"} if policy == "oneshot" else ({"start", "complete"} <= kinds and "oneshot" not in kinds)
    if policy == "sp+sr":
        assert pruner.engine.releases > 0  # low thresholds: releases happened and were backfilled
    # The optimizer state survived compaction and drives the small model.
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert held == {id(p) for p in model.parameters()}
    assert all(opt.state[p]["momentum_buffer"].shape == p.shape for p in model.parameters() if p in opt.state)
    model.train()
    opt.zero_grad()
    F.cross_entropy(model(X[:16]), Y[:16]).backward()
    opt.step()
    assert not opt.tracking


def test_sp_never_zeroes_a_group_abruptly() -> None:
    seen: dict[str, int] = {"checked": 0}

    def check(pruner: Pruner) -> None:
        engine, s = pruner.engine, pruner.structures
        norms = s.producer_norms().cpu()
        decaying = engine.decaying
        want = decay_norm(engine.l_init, 5, engine.done_steps)
        torch.testing.assert_close(norms[decaying], want[decaying].float(), rtol=1e-4, atol=1e-6)
        free = ~decaying & ~s.pruned
        assert (norms[free] > 0).all(), "a group reached zero outside the decay"
        seen["checked"] += int(decaying.sum())

    _model, pruner, opt = run("sp", check_each_step=check)
    assert seen["checked"] > 0 and not opt.project


def test_group_sparsity_target_and_adamw_variant() -> None:
    train = TrainSettings(optimizer="adamw", lr=1e-3, weight_decay=1e-2, device="cpu")
    _model, pruner, opt = run("oneshot", train=train, target=0.9, target_group_sparsity=0.5)
    assert opt.param_groups[0]["variant"] == "adamw" and opt.param_groups[0]["lmbda"] == 1e-2
    pruner.finish()
    assert opt.group_sparsity() == pytest.approx(0.5, abs=0.02)


def test_resnet20_reaches_the_target() -> None:
    model, pruner, _opt = run("oneshot", model_name="resnet20", target=0.5)
    pruner.compact()
    assert 0.47 <= pruner.structures.macs() / pruner.base_macs <= 0.51


def test_state_round_trip() -> None:
    m = OTOv2()
    m._refill, m.deadline = True, 17
    other = OTOv2()
    other.load_state_dict(m.state_dict())
    assert other._refill and other.deadline == 17


def test_needs_its_own_optimizer() -> None:
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = Pruner(
        model, X[:1], PruneSettings(method="otov2", target_macs_fraction=0.5), optimizer=opt, total_steps=10
    )
    F.cross_entropy(model(X[:4]), Y[:4]).backward()
    pruner.after_backward()
    opt.step()
    with pytest.raises(RuntimeError, match="build_optimizer"):
        pruner.after_step()


@pytest.mark.parametrize(
    "options,match",
    [
        ({"epsilon": 1.0}, "epsilon"),
        ({"epsilon": -0.1}, "epsilon"),
        ({"target_group_sparsity": 1.0}, "target_group_sparsity"),
        ({"partition_step": -1}, "partition_step"),
        ({"partition_step": 10, "half_space_project_steps": 5}, "half_space_project_steps"),
        ({"variant": "rmsprop"}, "variant"),
        ({"lambda": 0.1}, "lambda"),
    ],
)
def test_bad_options_are_refused_with_their_name(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_method("otov2", **options)
    with pytest.raises(ConfigError, match=match):
        load_config(None, values={"prune": {"method": "otov2", "target_macs_fraction": 0.5, "method_options": options}})
