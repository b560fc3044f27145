"""Mixed precision with the Pruner: a step the GradScaler skips advances no decay and no SR window,
in a user's own loop and in the built-in Trainer (float16 autocast on the CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from decayprune import DecaySettings, Pruner, PruneSettings
from decayprune.train import Trainer, TrainHook, TrainSettings


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def _settings(policy: str = "sp+sr") -> PruneSettings:
    # Release thresholds that never fire: the window and the EMAs still advance on every counted step.
    decay = DecaySettings(policy=policy, steps=6, window=3, t_rate=0.0, t_len=1e9)  # t_len: never
    return PruneSettings(method="l1", target_macs_fraction=0.5, iterative_steps=1, start_epoch=0, decay=decay)


def _dpm_state(pruner: Pruner) -> dict[str, torch.Tensor]:
    state = pruner.engine.state_dict()
    return {k: state[k].clone() for k in ("done_steps", "streak", "ema_rate", "ema_len", "decaying")}


def _user_step(net, opt, scaler, pruner, x, y, *, poison: bool = False, **after_step) -> None:
    """The README's AMP loop: scale, backward, unscale, after_backward, step, update, after_step."""
    with torch.autocast("cpu", dtype=torch.float16):
        loss = F.cross_entropy(net(x).float(), y)
    opt.zero_grad()
    scaler.scale(loss).backward()
    if poison:  # overflowing gradients (decaying structures among them): the scaler must skip this step
        net[0].weight.grad.fill_(float("inf"))
        net[2].weight.grad[0, 0] = float("nan")
    scaler.unscale_(opt)
    pruner.after_backward()
    scaler.step(opt)
    scaler.update()
    pruner.after_step(**after_step)


@pytest.mark.parametrize("how", ["bound-scaler", "skipped-flag"])
def test_a_step_the_scaler_skips_advances_no_decay_in_a_users_loop(how: str) -> None:
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    pruner = Pruner(
        net,
        torch.zeros(1, 4),
        _settings(),
        optimizer=opt,
        total_steps=200,
        scaler=scaler if how == "bound-scaler" else None,
    )
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)
    _user_step(net, opt, scaler, pruner, x, y)  # step 1 selects
    decaying = pruner.engine.decaying.nonzero().flatten()
    assert decaying.numel() > 0
    _user_step(net, opt, scaler, pruner, x, y)  # one counted decay step
    before, weights, scale = _dpm_state(pruner), [p.detach().clone() for p in net.parameters()], scaler.get_scale()
    flag = {} if how == "bound-scaler" else {"skipped": True}
    _user_step(net, opt, scaler, pruner, x, y, poison=True, **flag)
    assert scaler.get_scale() < scale, "the scaler did not skip: the test would pass vacuously"
    after = _dpm_state(pruner)
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert before["done_steps"][decaying].eq(1).all()
    assert torch.count_nonzero(before["ema_len"][decaying]) > 0, "the SR window had started"
    for p, w in zip(net.parameters(), weights, strict=True):
        assert torch.equal(p, w)  # neither the optimizer nor the decay rescale moved a weight
    _user_step(net, opt, scaler, pruner, x, y, **({} if how == "bound-scaler" else {"skipped": False}))
    assert pruner.engine.done_steps[decaying].eq(2).all()
    assert pruner.step == 4  # the step count (selection schedule) does advance


def test_without_a_scaler_every_step_counts() -> None:
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    pruner = Pruner(net, torch.zeros(1, 4), _settings("sp"), optimizer=opt, total_steps=200)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        pruner.after_backward()
        opt.step()
        pruner.after_step()
    decaying = pruner.engine.decaying.nonzero().flatten()
    assert decaying.numel() > 0 and pruner.engine.done_steps[decaying].eq(2).all()


class _Poisoned(nn.Module):
    """Adds inf to the logits while ``poison`` is set (every gradient overflows)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.poison = net, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out + float("inf") if self.poison else out


class _PoisonAt(TrainHook):
    def __init__(self, model: _Poisoned, step: int) -> None:
        self.model, self.at, self.seen = model, step, []

    def after_step(self, trainer: Trainer) -> None:
        self.seen.append(bool(trainer.last_step_skipped))
        self.model.poison = trainer.global_step + 1 == self.at  # poison the next step


def test_trainer_fp16_on_cpu_tells_the_pruner_about_a_skipped_step() -> None:
    model = _Poisoned(_net())
    g = torch.Generator().manual_seed(2)
    data = [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(10)]
    pruner = Pruner(model, torch.zeros(1, 4), _settings(), total_steps=10)
    poison = _PoisonAt(model, step=4)
    settings = TrainSettings(epochs=1, lr=0.05, device="cpu", amp="fp16", weight_decay=0.0)
    trainer = Trainer(model, data, None, settings, hooks=[pruner, poison], progress=False)
    assert trainer.scaler.is_enabled()
    trainer.fit()
    assert poison.seen == [k == 4 for k in range(1, 11)]
    assert pruner.scaler is trainer.scaler
    # Selected at step 1, N = 6: steps 2, 3, 5, 6, 7, 8 count, the skipped step 4 does not.
    kinds = {(e["kind"], e["step"]) for e in pruner.events}
    assert kinds == {("start", 1), ("complete", 8)}, kinds
