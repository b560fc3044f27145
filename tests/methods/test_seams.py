"""Three small methods written only against the public seams, each run with every zeroing policy.

(a) an optimizer-based method that drives its groups to zero with a proximal step,
(b) a gate-adding method that scores |g * dL/dg| from a data pass and folds its gates,
(c) a data-pass criterion (mean |activation|) used by the generic ``iterative`` method.
None of them imports the Pruner: they see a PruneContext and answer through hooks.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from decayprune import DecaySettings, Pruner, PruneSettings, TrainSettings, create_model
from decayprune.criteria import Criterion, backward_passes, capture_outputs, forward_passes, register_criterion
from decayprune.methods import PruneContext, PruningMethod, fill_to_budget, register_method
from decayprune.registry import CRITERIA, METHODS
from decayprune.structure import PRODUCER

POLICIES = ["oneshot", "sp", "sp+sr"]
STEPS = 24
X = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.arange(16) % 10
BATCHES = [(X[:8], Y[:8]), (X[8:], Y[8:])]


# ---------------------------------------------------------------------------- (a) optimizer-based


class ProximalSGD(torch.optim.SGD):
    """SGD whose step is followed by a group soft-threshold on the context's chosen groups."""

    def __init__(self, params: Any, ctx: PruneContext, lr: float, strength: float) -> None:
        super().__init__(params, lr=lr)
        self.ctx, self.strength = ctx, strength
        self.groups = torch.zeros(ctx.structures.num_structures, dtype=torch.bool)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = super().step(closure)
        if self.groups.any():
            norms = self.ctx.structures.producer_norms().cpu()
            shrink = (1 - self.param_groups[0]["lr"] * self.strength / norms.clamp_min(1e-12)).clamp_min(0)
            self.ctx.structures.scale_producers_(torch.where(self.groups, shrink, torch.ones_like(shrink)))
        return loss


class ProximalMethod(PruningMethod):
    """Chooses its groups at the first selection, shrinks them in its optimizer, hands them to the decay."""

    def build_optimizer(self, ctx: PruneContext, settings: TrainSettings) -> torch.optim.Optimizer:
        self.optimizer = ProximalSGD(ctx.model.parameters(), ctx, lr=settings.lr, strength=5.0)
        return self.optimizer

    def select(self, ctx: PruneContext) -> torch.Tensor | None:
        if ctx.schedule.is_selection_step(ctx.step) and not self.optimizer.groups.any():
            scores = ctx.structures.producer_norms().cpu()
            chosen = fill_to_budget(ctx, scores, ctx.final_macs, ctx.available())
            self.optimizer.groups[chosen] = True
            return None
        # Hand over the chosen groups the proximal step has (nearly) emptied, or all of them at the end.
        small = self.optimizer.groups & ~ctx.committed()
        small &= (ctx.structures.producer_norms().cpu() < 1e-3) | (ctx.step >= STEPS // 2)
        return small.nonzero().flatten() if small.any() else None


# ---------------------------------------------------------------------------- (b) gate-adding


class GateTaylorMethod(PruningMethod):
    """A gate after every prunable BN; scores accumulate |g * dL/dg| over calibration batches."""

    def setup(self, ctx: PruneContext) -> None:
        names = {
            sl.name.rpartition(".")[0]
            for _l, sl, _i in ctx.structures.parameter_slices(PRODUCER)
            if isinstance(ctx.model.get_submodule(sl.name.rpartition(".")[0]), nn.BatchNorm2d)
            and sl.name.endswith(".weight")
        }
        self.gates = [ctx.add_channel_multiplier(name, name="gate") for name in sorted(names)]

    def gate_scores(self, ctx: PruneContext) -> torch.Tensor:
        scores = torch.zeros(ctx.structures.num_structures)

        def accumulate() -> None:
            for gate in self.gates:
                value = (gate.param * gate.param.grad).abs().detach().cpu()
                scores.index_add_(0, gate.ids, value[gate.slice.positions])

        backward_passes(ctx, 2, accumulate)
        return scores

    def select(self, ctx: PruneContext) -> torch.Tensor | None:
        if not ctx.schedule.is_selection_step(ctx.step):
            return None
        return fill_to_budget(ctx, self.gate_scores(ctx), ctx.macs_budget(), ctx.available())


# ---------------------------------------------------------------------------- (c) data-pass criterion


class MeanActivation(Criterion):
    """Mean |output| of each structure's root layer over calibration batches."""

    needs = frozenset({"data"})

    def score(self, ctx: PruneContext) -> torch.Tensor:
        s = ctx.structures
        total = torch.zeros(s.num_structures)
        with capture_outputs([layer.root for layer in s.layers]) as seen:
            for _ in forward_passes(ctx, 2):
                for layer in s.layers:
                    out = seen[layer.root].detach().abs()
                    per_channel = out.transpose(0, 1).reshape(out.shape[1], -1).mean(1).cpu()
                    ids = layer.first + torch.arange(out.shape[1]) % layer.size
                    total.index_add_(0, ids, per_channel)
        return total


@pytest.fixture(scope="module", autouse=True)
def registered() -> Any:
    register_method("test_proximal")(ProximalMethod)
    register_method("test_gate_taylor")(GateTaylorMethod)
    register_criterion("test_mean_activation")(MeanActivation)
    yield
    METHODS.remove("test_proximal")
    METHODS.remove("test_gate_taylor")
    CRITERIA.remove("test_mean_activation")


# ---------------------------------------------------------------------------- driver


def run(settings: PruneSettings, calibration: bool = True) -> tuple[nn.Module, Pruner, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    pruner = Pruner(
        model, X[:1], settings, total_steps=STEPS, steps_per_epoch=1, calibration_data=BATCHES if calibration else None
    )
    optimizer = pruner.build_optimizer(TrainSettings(lr=0.05, momentum=0.9, weight_decay=0.0, device="cpu"))
    for step in range(STEPS):
        x, y = BATCHES[step % 2]
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        pruner.after_backward()
        optimizer.step()
        pruner.after_step()
    return model, pruner, optimizer


def compacts_exactly(model: nn.Module, pruner: Pruner, optimizer: torch.optim.Optimizer) -> float:
    """Relative output error between the masked model and the compacted one."""
    pruner.finish()
    pruner.structures.zero_pruned_(optimizer)
    model.eval()
    with torch.no_grad():
        masked = model(X)
        pruner.compact()
        compacted = model(X)
    return float((compacted - masked).norm() / masked.norm())


def settings(method: str, policy: str, **extra: Any) -> PruneSettings:
    decay = DecaySettings(policy=policy, steps=4, t_rate=0.5, t_len=0.5, cooldown=2)
    return PruneSettings(
        method=method, target_macs_fraction=0.5, iterative_steps=2, end_epoch=STEPS // 2, decay=decay, **extra
    )


@pytest.mark.parametrize("policy", POLICIES)
def test_optimizer_based_method_owns_the_step_and_compacts_exactly(policy: str) -> None:
    model, pruner, optimizer = run(settings("test_proximal", policy))
    assert isinstance(optimizer, ProximalSGD) and pruner.optimizer is optimizer
    assert pruner.structures.macs(pruner.engine.committed()) <= pruner.final_macs * 1.01
    assert compacts_exactly(model, pruner, optimizer) < 1e-5
    assert pruner.structures.model is model


@pytest.mark.parametrize("policy", POLICIES)
def test_gate_method_scores_from_data_and_folds_its_gates(policy: str) -> None:
    torch.manual_seed(0)
    plain = create_model("small_cnn", num_classes=10, in_channels=1).eval()
    reference = plain(X)
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1).eval()
    gated = Pruner(
        model,
        X[:1],
        settings("test_gate_taylor", policy),
        total_steps=STEPS,
        steps_per_epoch=1,
        calibration_data=BATCHES,
    )
    assert gated.method.gates and all(
        name.endswith(".gate") for name in [n for n, _ in model.named_parameters() if "gate" in n]
    )
    torch.testing.assert_close(model(X), reference)  # gates start at one: output unchanged

    model, pruner, optimizer = run(settings("test_gate_taylor", policy))
    assert any(p is g.param for g in pruner.method.gates for group in optimizer.param_groups for p in group["params"])
    assert pruner.structures.macs(pruner.engine.committed()) <= pruner.final_macs * 1.01
    assert compacts_exactly(model, pruner, optimizer) < 1e-5
    assert not any("gate" in n for n, _ in model.named_parameters())  # folded and removed


@pytest.mark.parametrize("policy", POLICIES)
def test_data_pass_criterion_drives_the_generic_method(policy: str) -> None:
    model, pruner, optimizer = run(settings("iterative", policy, criterion="test_mean_activation"))
    assert isinstance(pruner.method.criterion, MeanActivation)
    assert pruner.structures.macs(pruner.engine.committed()) <= pruner.final_macs * 1.01
    assert compacts_exactly(model, pruner, optimizer) < 1e-5


def test_data_criterion_without_calibration_data_is_refused() -> None:
    with pytest.raises(ValueError, match="needs data: pass calibration_data"):
        run(settings("iterative", "sp", criterion="test_mean_activation"), calibration=False)


def test_criterion_on_a_method_without_one_is_refused() -> None:
    with pytest.raises(ValueError, match="does not rank by a criterion"):
        settings("test_proximal", "sp", criterion="group_norm")
