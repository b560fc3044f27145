"""DecayEngine on the device: no host sync in a steady-state step, a bounded number of ops
whatever the depth, read-back lag that changes bookkeeping only, skipped AMP steps and
gradient accumulation."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from decayprune.decay import DecayEngine, DecaySettings
from decayprune.models import create
from decayprune.pruner import Pruner, PruneSettings
from decayprune.structure import StructureSet
from decayprune.structure.kernels import FlatPlan

SYNC_OPS = {"aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero"}
VIEW_OPS = {"aten::as_strided", "aten::slice", "aten::view", "aten::detach", "aten::alias", "aten::split"}


class Run:
    """A model, its structures, SGD and an engine with some structures pruned and some decaying."""

    def __init__(self, model_name: str, policy: str, sync_every: int, steps: int = 100) -> None:
        torch.manual_seed(0)
        self.model = create(model_name, num_classes=10)
        self.structures = StructureSet(self.model, torch.randn(1, 3, 32, 32))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.events: list[dict] = []
        settings = DecaySettings(policy=policy, steps=steps, sync_every=sync_every, t_rate=-1.0, t_len=1e9)
        self.engine = DecayEngine(self.structures, settings, sink=self.events.append)
        self.engine.optimizer = self.opt
        n = self.structures.num_structures
        self.structures.set_pruned(torch.arange(0, n, 10))
        ids = torch.arange(n)
        self.engine.start(ids[(ids % 10 == 3) | (ids % 10 == 6)], step=0)  # disjoint from the pruned ones
        self.x, self.y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))

    def backward(self) -> None:
        self.opt.zero_grad()
        F.cross_entropy(self.model(self.x), self.y).backward()

    def step(self, k: int) -> list[int]:
        self.backward()
        self.engine.after_backward()
        self.opt.step()
        return self.engine.after_step(k)

    def profiled_step(self, k: int) -> tuple[Counter, Counter]:
        """Operator calls inside after_backward and after_step: all of them, and the top-level ones."""
        self.backward()
        every, top = _profile(self.engine.after_backward)
        self.opt.step()
        every2, top2 = _profile(lambda: self.engine.after_step(k))
        return every + every2, top + top2


def _profile(call) -> tuple[Counter, Counter]:
    with torch.profiler.profile() as prof, torch.profiler.record_function("dpm"):
        call()
    every, top = Counter(), Counter()
    for ev in prof.events():
        if _inside(ev, "dpm"):
            every[ev.name] += 1
            if ev.cpu_parent.name == "dpm":
                top[ev.name] += 1
    return every, top


def _inside(event, name: str) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == name:
            return True
        parent = parent.cpu_parent
    return False


@pytest.mark.parametrize("policy", ["oneshot", "sp", "sp+sr"])
def test_steady_state_step_makes_no_host_sync(policy: str) -> None:
    run = Run("resnet20", policy, sync_every=8)
    for k in range(1, 4):
        run.step(k)
    counts, _top = run.profiled_step(4)  # not a sync point (8 is)
    assert sum(counts.values()) > 0, "the profiler saw nothing: the test would pass vacuously"
    assert {name: c for name, c in counts.items() if name in SYNC_OPS} == {}
    # At the sync point the engine does read back (a handful of syncs, not per structure).
    for k in range(5, 8):
        run.step(k)
    at_sync, _top = run.profiled_step(8)
    if policy != "oneshot":
        assert 0 < sum(c for name, c in at_sync.items() if name in SYNC_OPS) < 20


def test_compute_ops_per_step_do_not_grow_with_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    # The accelerator's path (on the CPU, sums of squares are one cheap row norm per parameter).
    monkeypatch.setattr(FlatPlan, "cpu_row_ops", False)

    def compute_ops(model_name: str) -> int:
        run = Run(model_name, "sp+sr", sync_every=8)
        for k in range(1, 4):
            run.step(k)
        _every, top = run.profiled_step(4)
        return sum(c for name, c in top.items() if name not in VIEW_OPS)

    shallow, deep = compute_ops("resnet20"), compute_ops("resnet32")
    assert shallow == deep and shallow < 150, (shallow, deep)


class _CountCalls(TorchDispatchMode):
    """Every aten call that reaches the dispatcher, views included (a ``_foreach_*`` call once)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        return func(*args, **(kwargs or {}))


def _dispatched_per_step(model_name: str) -> tuple[int, int]:
    """Dispatched calls of one sp+sr step between read-backs, and the model's multi-dim producer tensors."""
    run = Run(model_name, "sp+sr", sync_every=8)
    for k in range(1, 4):
        run.step(k)
    run.backward()
    with _CountCalls() as counter:
        run.engine.after_backward()
    run.opt.step()
    with counter:
        run.engine.after_step(4)
    plans = run.structures.flat_plans()
    return counter.calls, sum(p.dim() > 1 for plan in plans for p in plan.params)


@pytest.mark.parametrize("row_ops", [False, True], ids=["fused", "cpu_rows"])
def test_dispatched_calls_per_step_do_not_grow_with_depth(monkeypatch: pytest.MonkeyPatch, row_ops: bool) -> None:
    # Views too: the per-parameter views are made once per plan, not every step.
    monkeypatch.setattr(FlatPlan, "cpu_row_ops", row_ops)
    (shallow, n_shallow), (deep, n_deep) = _dispatched_per_step("resnet20"), _dispatched_per_step("resnet56")
    assert n_deep > 2 * n_shallow
    if not row_ops:
        assert shallow == deep and shallow < 150, (shallow, deep)
    else:  # the CPU's row norms: one per multi-dim tensor for the weights and one for the gradients
        assert deep - shallow <= 2 * (n_deep - n_shallow), (shallow, deep)


def test_read_back_period_changes_bookkeeping_only() -> None:
    """K = 1 and K = 5 give bit-identical weights and optimizer state, and the same events."""
    runs = {k: Run("resnet20", "sp+sr", sync_every=k, steps=3) for k in (1, 5)}
    for run in runs.values():
        run.engine.settings = run.engine.settings.model_copy(update={"t_rate": 0.0, "t_len": 1.0})
    lagging = runs[5]
    decaying = lagging.engine.decaying.nonzero().flatten()
    for k in range(1, 5):
        for run in runs.values():
            run.step(k)
    assert not lagging.structures.pruned[decaying].any(), "read back before the sync point"
    assert runs[1].structures.pruned.sum() > lagging.structures.pruned.sum()
    for name, p in runs[1].model.named_parameters():
        assert torch.equal(p, lagging.model.get_parameter(name)), name
        assert torch.equal(
            runs[1].opt.state[p]["momentum_buffer"],
            lagging.opt.state[lagging.model.get_parameter(name)]["momentum_buffer"],
        ), name
    lagging.engine.sync()
    assert torch.equal(runs[1].structures.pruned, lagging.structures.pruned)
    assert runs[1].events == lagging.events
    assert {e["kind"] for e in lagging.events} >= {"start", "complete"}
    assert all(e["step"] == 3 for e in lagging.events if e["kind"] == "complete")


def test_completed_decay_is_held_at_zero_before_the_read_back() -> None:
    run = Run("resnet20", "sp", sync_every=10, steps=2)
    targets = run.engine.decaying.nonzero().flatten()
    for k in range(1, 6):
        run.step(k)
        if k >= 2:  # completed at step 2
            assert torch.all(run.structures.producer_norms()[targets] == 0), k
        if k >= 3:  # gradients of step 2 predate the completion
            assert torch.all(run.structures.grad_norms()[targets] == 0), k
    assert not run.structures.pruned[targets].any()  # bookkeeping still lags (no sync point yet)
    for _layer, sl, sids in run.structures.parameter_slices("producer"):
        dead = sl.positions[torch.isin(sids, targets)]
        buf = run.opt.state[sl.param]["momentum_buffer"]
        assert torch.all(buf.index_select(sl.dim, dead) == 0), sl.name
    assert run.engine.decaying[targets].sum() == 0  # a query reads back
    assert run.structures.pruned[targets].all()


# ---------------------------------------------------------------------------- skipped steps


def _tiny() -> tuple[nn.Module, StructureSet, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
    return net, StructureSet(net, torch.randn(1, 4)), torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)


@pytest.mark.parametrize("as_tensor", [False, True], ids=["bool", "device-flag"])
def test_skipped_step_does_not_advance_the_decay(as_tensor: bool) -> None:
    net, s, opt = _tiny()
    events: list[dict] = []
    # Release conditions always hold, but the window (4) needs more real steps than the run has (3).
    settings = DecaySettings(policy="sp+sr", steps=3, t_rate=-1e9, t_len=0.0, window=4, sr_criterion="pushback")
    engine = DecayEngine(s, settings, sink=events.append)
    engine.optimizer = opt
    l_init = s.producer_norms()[1].item()
    engine.start(torch.tensor([1]), step=0)
    x = torch.randn(8, 4)
    done = 0
    for k, skip in enumerate([False, True, True, False, False], start=1):
        opt.zero_grad()
        net(x).square().mean().backward()
        engine.after_backward()
        if not skip:
            opt.step()
            done += 1
        engine.after_step(k, skipped=torch.tensor(skip) if as_tensor else skip)
        assert s.producer_norms()[1].item() == pytest.approx(l_init * (3 - done) / 3, rel=1e-5, abs=1e-7), k
        assert int(engine.done_steps[1]) == done
        assert int(engine.streak[1]) == done  # skipped steps do not extend the streak either
    assert [(e["kind"], e["step"]) for e in events] == [("start", 0), ("complete", 5)]


def test_pruner_passes_a_skip_flag_to_the_engine() -> None:
    net, _s, opt = _tiny()
    settings = PruneSettings(
        method="l1",
        target_macs_fraction=0.5,
        iterative_steps=1,
        start_epoch=0,
        decay=DecaySettings(policy="sp", steps=4),
    )
    pruner = Pruner(net, torch.randn(1, 4), settings, optimizer=opt, total_steps=100)
    x = torch.randn(8, 4)

    def step(skipped: torch.Tensor | bool) -> None:
        opt.zero_grad()
        net(x).square().mean().backward()
        pruner.after_backward()
        if not bool(skipped):
            opt.step()
        pruner.after_step(skipped=skipped)

    step(False)  # step 1 selects
    decaying = pruner.engine.decaying.nonzero().flatten()
    assert decaying.numel() > 0
    step(torch.tensor(True))
    assert torch.all(pruner.engine.done_steps[decaying] == 0)
    step(torch.tensor(False))
    assert torch.all(pruner.engine.done_steps[decaying] == 1)


# ---------------------------------------------------------------------------- accumulation


def test_gradient_accumulation_calls_after_step_once_per_optimizer_step() -> None:
    net, s, opt = _tiny()
    engine = DecayEngine(s, DecaySettings(policy="sp", steps=2))
    engine.optimizer = opt
    engine.start(torch.tensor([0, 7]), step=0)
    x = torch.randn(8, 4)
    opt.zero_grad()
    for micro in x.split(4):  # two micro-batches, one optimizer step
        net(micro).square().mean().backward()
        engine.after_backward()
    opt.step()
    engine.after_step(1)
    assert torch.all(engine.done_steps[[0, 7]] == 1)
    with pytest.raises(RuntimeError, match="twice without after_backward"):
        engine.after_step(2)
    assert torch.all(engine.done_steps[[0, 7]] == 1), "the rejected call must not count"


def test_sync_every_must_be_positive() -> None:
    _net, s, _opt = _tiny()
    engine = DecayEngine(s, DecaySettings(policy="sp"))
    assert engine.sync_every == 1  # unset, on the CPU
    engine.sync_every = 16
    assert engine.sync_every == 16
    with pytest.raises(ValueError, match="sync_every"):
        engine.sync_every = 0


# ---------------------------------------------------------------------------- the accelerator's path


@pytest.mark.parametrize("name", ["smooth_sgd", "smooth_adamw", "oneshot", "release", "cooldown", "round_trip"])
def test_fused_element_path_is_exact_too(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The engine's exactness tests, on the element-level path GPUs take (the CPU fills rows)."""
    import test_decay_engine as t

    monkeypatch.setattr(FlatPlan, "cpu_row_ops", False)
    runs = {
        "smooth_sgd": lambda: t.test_smooth_pruning_follows_the_schedule(t._sgd),
        "smooth_adamw": lambda: t.test_smooth_pruning_follows_the_schedule(t._adamw),
        "oneshot": t.test_oneshot_zeroes_at_once,
        "release": lambda: t.test_self_rectifying_releases_a_pushed_back_structure(3),
        "cooldown": t.test_released_structures_cool_down,
        "round_trip": t.test_state_dict_round_trip,
    }
    runs[name]()
