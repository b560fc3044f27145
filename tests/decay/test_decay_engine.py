"""DecayEngine: smooth pruning reaches exactly zero on schedule, keep-at-zero holds afterwards,
self-rectifying releases structures that training pushes back, and the state round-trips."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from decayprune.decay import DecayEngine, DecaySettings
from decayprune.structure import PRODUCER, StructureSet


def small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


def _sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)


def _adamw(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-2, weight_decay=1e-2)


class Setup:
    """A small net, its structures, an optimizer and a DecayEngine fed by random batches."""

    def __init__(self, settings: DecaySettings, make_opt: Callable = _sgd, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = small_net()
        self.structures = StructureSet(self.model, torch.randn(1, 3, 6, 6))
        self.optimizer = make_opt(self.model.parameters())
        self.events: list[dict] = []
        self.engine = DecayEngine(self.structures, settings, sink=self.events.append)
        self.engine.optimizer = self.optimizer
        self.data = torch.Generator().manual_seed(seed + 1)
        self.extra_loss: Callable[[], torch.Tensor] | None = None
        self.model.train()

    def layer(self, name: str):
        return next(layer for layer in self.structures.layers if layer.name == name)

    def step(self, step: int) -> list[int]:
        x = torch.randn(8, 3, 6, 6, generator=self.data)
        y = torch.randint(0, 4, (8,), generator=self.data)
        self.optimizer.zero_grad()
        loss = F.cross_entropy(self.model(x), y)
        if self.extra_loss is not None:
            loss = loss + self.extra_loss()
        loss.backward()
        self.engine.after_backward()
        self.optimizer.step()
        return self.engine.after_step(step)


def _assert_held_at_zero(setup: Setup, ids: torch.Tensor, grads: bool = True) -> None:
    """Weights, gradients (from the next backward on) and optimizer state of ``ids`` are 0."""
    s = setup.structures
    assert torch.all(s.producer_norms()[ids] == 0.0)
    if grads:
        assert torch.all(s.grad_norms()[ids] == 0.0)
    for _layer, sl, sids in s.parameter_slices(PRODUCER):
        dead = sl.positions[torch.isin(sids, ids)]
        if dead.numel() == 0:
            continue
        for key, value in setup.optimizer.state[sl.param].items():
            if isinstance(value, torch.Tensor) and value.shape == sl.param.shape:
                assert torch.all(value.index_select(sl.dim, dead) == 0), (sl.name, key)


@pytest.mark.parametrize("make_opt", [_sgd, _adamw], ids=["sgd", "adamw"])
def test_smooth_pruning_follows_the_schedule(make_opt: Callable) -> None:
    total = 6
    setup = Setup(DecaySettings(policy="sp", steps=total), make_opt)
    for k in range(1, 4):  # some training first, so optimizer state exists
        setup.step(k)
    l0, l1 = setup.layer("0"), setup.layer("3")
    targets = torch.tensor([l0.first + 1, l0.first + 5, l1.first + 2])
    others = torch.ones(setup.structures.num_structures, dtype=torch.bool)
    others[targets] = False
    l_init = setup.structures.producer_norms()[targets].clone()
    setup.engine.start(targets, step=3)
    assert setup.engine.decaying[targets].all()
    for n in range(1, total + 1):
        setup.step(3 + n)
        norms = setup.structures.producer_norms()[targets]
        if n < total:
            torch.testing.assert_close(norms, l_init * (total - n) / total, rtol=1e-5, atol=0)
            assert not setup.structures.pruned[targets].any()
        else:
            assert torch.all(norms == 0.0)
    assert setup.structures.pruned[targets].all() and not setup.engine.decaying.any()
    assert setup.engine.completed == 3
    assert [e["kind"] for e in setup.events].count("complete") == 3
    assert {e["structure"] for e in setup.events if e["kind"] == "start"} == set(targets.tolist())
    _assert_held_at_zero(setup, targets, grads=False)  # this step's gradients predate completion
    before = {n: p.detach().clone() for n, p in setup.model.named_parameters()}
    for k in range(20):
        setup.step(3 + total + 1 + k)
        _assert_held_at_zero(setup, targets)
    # Training went on for everything else.
    assert all(not torch.equal(before[n], p) for n, p in setup.model.named_parameters() if n.endswith("weight"))
    assert torch.all(setup.structures.producer_norms()[others] > 0)


def test_oneshot_zeroes_at_once() -> None:
    setup = Setup(DecaySettings(policy="oneshot"))
    setup.step(1)
    targets = torch.tensor([0, 9])
    setup.engine.start(targets, step=1)
    assert setup.structures.pruned[targets].all() and not setup.engine.decaying.any()
    assert setup.engine.completed == 2
    assert [e["kind"] for e in setup.events] == ["oneshot", "oneshot"]
    _assert_held_at_zero(setup, targets)
    for k in range(2, 6):
        setup.step(k)
        _assert_held_at_zero(setup, targets)


def test_empty_start_is_a_no_op() -> None:
    setup = Setup(DecaySettings(policy="sp", steps=3))
    setup.engine.start(torch.zeros(0, dtype=torch.long), step=0)
    assert not setup.engine.decaying.any() and setup.events == []
    assert setup.step(1) == []


def test_finish_forces_pending_decays_to_zero() -> None:
    setup = Setup(DecaySettings(policy="sp", steps=50))
    targets = torch.tensor([2, 3])
    setup.engine.start(targets, step=0)
    setup.step(1)
    assert torch.all(setup.structures.producer_norms()[targets] > 0)
    setup.engine.finish(step=1)
    assert setup.structures.pruned[targets].all() and not setup.engine.decaying.any()
    assert [e["kind"] for e in setup.events][-2:] == ["forced", "forced"]
    _assert_held_at_zero(setup, targets)


# ---------------------------------------------------------------------------- self-rectifying


def _push_back(setup: Setup, sid_layer_name: str, channel: int, strength: float = 5.0) -> None:
    """A loss term that strongly rewards one channel's norm, so training pushes it back up."""
    conv = setup.model.get_submodule(sid_layer_name)

    def reward() -> torch.Tensor:
        return -strength * conv.weight[channel].pow(2).sum()

    setup.extra_loss = reward


def _rectify_setup(policy: str, window: int, cooldown: int = 7) -> tuple[Setup, int, int]:
    settings = DecaySettings(
        policy=policy, steps=10, t_rate=1.0, t_len=2.0, window=window, cooldown=cooldown, sr_criterion="pushback"
    )
    setup = Setup(settings, lambda p: torch.optim.SGD(p, lr=0.1))
    layer = setup.layer("0")
    pushed, quiet = layer.first + 0, layer.first + 1
    _push_back(setup, "0", channel=0)
    return setup, pushed, quiet


@pytest.mark.parametrize("window", [1, 3])
def test_self_rectifying_releases_a_pushed_back_structure(window: int) -> None:
    setup, pushed, quiet = _rectify_setup("sp+sr", window)
    engine = setup.engine
    engine.start(torch.tensor([pushed, quiet]), step=0)
    released_at = None
    for k in range(1, 11):
        released = setup.step(k)
        if pushed in released:
            released_at = k
        if k < window:
            assert engine.decaying[pushed], "released before the window was full"
    assert released_at == window
    assert engine.releases == 1
    releases = [e for e in setup.events if e["kind"] == "release"]
    assert len(releases) == 1 and releases[0]["structure"] == pushed and releases[0]["step"] == window
    assert releases[0]["c_rate"] > 1.0 and releases[0]["c_len"] > 2.0
    assert releases[0]["layer"] == "0"
    # The released structure keeps its weights and trains normally; the quiet one completed.
    assert not engine.decaying[pushed] and not setup.structures.pruned[pushed]
    assert setup.structures.producer_norms()[pushed] > 0
    assert setup.structures.pruned[quiet] and setup.structures.producer_norms()[quiet] == 0.0
    assert [e["structure"] for e in setup.events if e["kind"] == "complete"] == [quiet]


def test_released_structures_cool_down() -> None:
    cooldown = 7
    setup, pushed, quiet = _rectify_setup("sp+sr", window=1, cooldown=cooldown)
    engine = setup.engine
    untouched = quiet + 1
    assert engine.available(0)[pushed] and engine.available(0)[untouched]
    engine.start(torch.tensor([pushed, quiet]), step=0)
    assert not engine.available(0)[pushed] and not engine.available(0)[quiet]
    assert setup.step(1) == [pushed]
    for step in range(1, 1 + cooldown):
        assert not engine.available(step)[pushed], step
    assert engine.available(1 + cooldown)[pushed]
    assert engine.available(1)[untouched]
    assert not engine.available(1)[quiet]  # still decaying


def test_smooth_pruning_alone_overrides_push_back() -> None:
    setup, pushed, quiet = _rectify_setup("sp", window=1)
    setup.engine.start(torch.tensor([pushed, quiet]), step=0)
    for k in range(1, 11):
        assert setup.step(k) == []
    assert setup.engine.releases == 0
    assert setup.structures.pruned[[pushed, quiet]].all()
    assert torch.all(setup.structures.producer_norms()[[pushed, quiet]] == 0.0)


def test_state_dict_round_trip() -> None:
    setup, pushed, quiet = _rectify_setup("sp+sr", window=1)
    setup.engine.start(torch.tensor([pushed, quiet, quiet + 2]), step=0)
    for k in range(1, 5):
        setup.step(k)
    state = setup.engine.state_dict()

    clone_model, clone_opt = copy.deepcopy((setup.model, setup.optimizer))
    clone_s = StructureSet(clone_model, torch.randn(1, 3, 6, 6))
    clone = DecayEngine(clone_s, setup.engine.settings)
    clone.optimizer = clone_opt
    clone.load_state_dict(state)
    for key in ("decaying", "done_steps", "l_init", "streak", "cooldown_until"):
        assert torch.equal(getattr(clone, key), getattr(setup.engine, key)), key
    assert torch.equal(clone_s.pruned, setup.structures.pruned)
    assert (clone.releases, clone.completed) == (setup.engine.releases, setup.engine.completed) and clone.releases == 1
    # Mutating the saved state does not reach back into the engine.
    state["decaying"].fill_(False)
    assert setup.engine.decaying.any()

    # Both continue identically.
    x = torch.randn(8, 3, 6, 6)
    y = torch.randint(0, 4, (8,))
    for model, engine, opt in ((setup.model, setup.engine, setup.optimizer), (clone_model, clone, clone_opt)):
        opt.zero_grad()
        (F.cross_entropy(model(x), y) - 5.0 * model[0].weight[0].pow(2).sum()).backward()
        engine.after_backward()
        opt.step()
        engine.after_step(5)
    torch.testing.assert_close(clone_s.producer_norms(), setup.structures.producer_norms(), rtol=0, atol=0)


def _released_run(on_release: str) -> tuple[Setup, int, float]:
    """A pushed-back structure released at step 3 (W = 3); returns the setup, its id and its norm at selection."""
    settings = DecaySettings(
        policy="sp+sr", steps=10, t_rate=1.0, t_len=2.0, window=3, sr_criterion="pushback", on_release=on_release
    )
    setup = Setup(settings, lambda p: torch.optim.SGD(p, lr=0.1))
    pushed = setup.layer("0").first
    _push_back(setup, "0", channel=0)
    at_selection = float(setup.structures.producer_norms()[pushed])
    setup.engine.start(torch.tensor([pushed]), step=0)
    assert [setup.step(k) for k in range(1, 4)] == [[], [], [pushed]]
    return setup, pushed, at_selection


def test_a_released_structure_keeps_its_weights_or_gets_its_norm_at_selection_back() -> None:
    kept, pushed, at_selection = _released_run("keep")
    restored, _, _ = _released_run("restore")
    kept_norm = float(kept.structures.producer_norms()[pushed])
    assert float(restored.structures.producer_norms()[pushed]) == pytest.approx(at_selection, rel=1e-5)
    assert kept_norm != pytest.approx(at_selection, rel=1e-3)  # the push took it past its norm at selection
    # Same runs up to the release: "restore" only rescales, in the direction training gave the weights.
    for k_param, r_param in zip(kept.model[0:2].parameters(), restored.model[0:2].parameters()):
        torch.testing.assert_close(r_param[0], k_param[0] * (at_selection / kept_norm), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(r_param[1:], k_param[1:])
    restored.step(4)  # released: the decay no longer rescales it
    assert restored.engine.releases == 1 and not restored.engine.decaying[pushed]


def test_on_release_without_self_rectifying_is_refused() -> None:
    with pytest.raises(ValueError, match="releases nothing"):
        DecaySettings(policy="sp", on_release="restore")
    assert DecaySettings(policy="sp", on_release="keep").on_release == "keep"
