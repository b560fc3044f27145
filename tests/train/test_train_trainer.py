"""The training loop: learning, exact resume, hooks, metrics file, progress output."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console
from sklearn.datasets import load_digits
from torch import nn

from decayprune.train import Trainer, TrainHook, TrainSettings, read_checkpoint_meta, read_jsonl

TIMING = {"epoch_time_s", "images_per_s"}


def test_digits_reach_high_accuracy(tmp_path: Path, loader_cls) -> None:
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train_idx, test_idx = order[:1400], order[1400:]
    train = loader_cls(x[train_idx], y[train_idx], 32, shuffle=True, seed=1)
    test = loader_cls(x[test_idx], y[test_idx], 128, shuffle=False)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(128, 10),
    )
    settings = TrainSettings(epochs=4, batch_size=32, lr=0.05, device="cpu", label_smoothing=0.05)
    result = Trainer(model, train, test, settings, run_dir=tmp_path, progress=False).fit()
    assert result.final["top1"] > 90.0
    assert result.final["top5"] >= result.final["top1"]
    assert result.final["samples"] == len(test_idx)
    assert result.epochs_run == 4 and len(result.history) == 4
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    lines = read_jsonl(tmp_path / "metrics.jsonl")
    assert lines == json.loads(json.dumps(result.history))
    assert set(lines[0]) == {
        "epoch",
        "step",
        "train_loss",
        "train_top1",
        "test_top1",
        "test_top5",
        "test_loss",
        "lr",
        "epoch_time_s",
        "images_per_s",
    }
    assert [line["epoch"] for line in lines] == [0, 1, 2, 3]
    assert [line["step"] for line in lines] == [len(train) * (e + 1) for e in range(4)]


class Recorder(TrainHook):
    """Records calls; optionally crashes at a given global step (simulating a killed job)."""

    def __init__(self, crash_at_step: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.crash_at_step = crash_at_step
        self.grad_norms = torch.zeros(0)

    def on_train_start(self, trainer: Trainer) -> None:
        self.calls.append(("start", trainer.epoch, trainer.global_step))

    def after_backward(self, trainer: Trainer) -> None:
        assert all(p.grad is not None for p in trainer.model.parameters())
        self.calls.append(("backward", trainer.global_step))

    def after_step(self, trainer: Trainer) -> None:
        norm = torch.stack([p.detach().norm() for p in trainer.model.parameters()]).norm()
        self.grad_norms = torch.cat([self.grad_norms, norm.view(1)])
        self.calls.append(("step", trainer.global_step))
        if trainer.global_step == self.crash_at_step:
            raise KeyboardInterrupt("simulated kill")

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict) -> None:
        metrics["hook_steps"] = len(self.grad_norms)
        self.calls.append(("epoch", epoch, metrics["step"]))

    def on_train_end(self, trainer: Trainer) -> None:
        self.calls.append(("end", trainer.epoch, trainer.global_step))

    def state_dict(self) -> dict:
        return {"grad_norms": self.grad_norms}

    def load_state_dict(self, state: dict) -> None:
        self.grad_norms = state["grad_norms"].clone()


def test_hooks_are_called_in_order_with_the_right_counts(toy_loaders, make_toy_model) -> None:
    train, test = toy_loaders(n_train=64, batch_size=16)  # 4 steps per epoch
    hooks = [Recorder(), Recorder()]
    trainer = Trainer(make_toy_model(), train, test, TrainSettings(epochs=3, device="cpu"), hooks=hooks, progress=False)
    result = trainer.fit()
    calls = hooks[0].calls
    assert calls == hooks[1].calls
    assert calls[0] == ("start", 0, 0) and calls[-1] == ("end", 3, 12)
    body = [c for c in calls[1:-1] if c[0] != "epoch"]
    assert body == [call for k in range(12) for call in (("backward", k), ("step", k + 1))]
    assert [c for c in calls if c[0] == "epoch"] == [("epoch", 0, 4), ("epoch", 1, 8), ("epoch", 2, 12)]
    assert [h["hook_steps"] for h in result.history] == [4, 8, 12]  # hooks can add metrics
    assert train.epochs_seen == [0, 1, 2]


def _straight_and_resumed(tmp_path: Path, toy_loaders, make_toy_model, settings: TrainSettings, crash_at: int):
    train, test = toy_loaders()
    straight_hook = Recorder()
    straight = Trainer(
        make_toy_model(0), train, test, settings, run_dir=tmp_path / "straight", hooks=[straight_hook], progress=False
    )
    straight_result = straight.fit()

    run_dir = tmp_path / "interrupted"
    train, test = toy_loaders()
    with pytest.raises(KeyboardInterrupt):
        Trainer(
            make_toy_model(0),
            train,
            test,
            settings,
            run_dir=run_dir,
            hooks=[Recorder(crash_at_step=crash_at)],
            progress=False,
        ).fit()
    train, test = toy_loaders()
    resumed_hook = Recorder()
    resumed = Trainer(
        make_toy_model(123),
        train,
        test,
        settings,
        run_dir=run_dir,  # other init: weights come from disk
        hooks=[resumed_hook],
        progress=False,
    )
    resumed_result = resumed.fit(resume=True)
    return straight, straight_result, straight_hook, resumed, resumed_result, resumed_hook, run_dir


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_reaches_the_same_weights(tmp_path: Path, toy_loaders, make_toy_model, optimizer: str) -> None:
    settings = TrainSettings(
        epochs=4,
        lr=0.05,
        optimizer=optimizer,
        warmup_epochs=1,
        label_smoothing=0.1,
        checkpoint_every=2,
        device="cpu",
        seed=7,
    )
    steps = 6  # 96 samples / 16
    crash_at = 3 * steps + 2  # during the 4th epoch; the last checkpoint is after epoch 2
    straight, s_res, s_hook, resumed, r_res, r_hook, run_dir = _straight_and_resumed(
        tmp_path, toy_loaders, make_toy_model, settings, crash_at
    )
    assert r_hook.calls[0] == ("start", 2, 2 * steps)
    assert resumed.global_step == straight.global_step == 4 * steps and resumed.epoch == 4
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(straight.optimizer.state.values(), resumed.optimizer.state.values()):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert torch.equal(s_hook.grad_norms, r_hook.grad_norms)
    assert r_res.epochs_run == 2 and s_res.epochs_run == 4
    assert r_res.final == s_res.final

    def strip(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]

    lines = read_jsonl(run_dir / "metrics.jsonl")
    assert len(lines) == 4 and [line["epoch"] for line in lines] == [0, 1, 2, 3]
    assert strip(lines) == strip(read_jsonl(tmp_path / "straight" / "metrics.jsonl"))
    assert strip(r_res.history) == strip(s_res.history)
    assert read_checkpoint_meta(run_dir / "checkpoint")["epoch"] == 4


def test_eval_every_and_stop_training(tmp_path: Path, toy_loaders, make_toy_model) -> None:
    class StopAfter(TrainHook):
        def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict) -> None:
            trainer.stop_training = epoch == 2

    train, test = toy_loaders()
    settings = TrainSettings(epochs=6, eval_every=2, checkpoint_every=0, device="cpu")
    trainer = Trainer(make_toy_model(), train, test, settings, run_dir=tmp_path, hooks=[StopAfter()], progress=False)
    result = trainer.fit()
    assert result.epochs_run == 3 and trainer.epoch == 3
    assert [h["test_top1"] is None for h in result.history] == [True, False, True]
    assert set(result.final) == {"top1", "top5", "loss", "samples"}  # evaluated after the early stop
    assert read_checkpoint_meta(tmp_path / "checkpoint")["epoch"] == 3  # saved when stopping


def test_resume_errors_and_auto(tmp_path: Path, toy_loaders, make_toy_model) -> None:
    train, test = toy_loaders()
    settings = TrainSettings(epochs=1, device="cpu")
    with pytest.raises(ValueError, match="run_dir"):
        Trainer(make_toy_model(), train, test, settings, progress=False).fit(resume=True)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        Trainer(make_toy_model(), train, test, settings, run_dir=tmp_path, progress=False).fit(resume=True)
    first = Trainer(make_toy_model(), train, test, settings, run_dir=tmp_path, progress=False).fit(resume="auto")
    assert first.epochs_run == 1
    with pytest.warns(UserWarning, match="lr"):
        again = Trainer(
            make_toy_model(),
            train,
            test,
            TrainSettings(epochs=1, lr=0.01, device="cpu"),
            run_dir=tmp_path,
            progress=False,
        ).fit(resume="auto")
    assert again.epochs_run == 0 and again.final["top1"] == pytest.approx(first.final["top1"])
    assert len(again.history) == 1
    with pytest.raises(ValueError, match="resume"):
        Trainer(make_toy_model(), train, test, settings, progress=False).fit(resume="yes")  # type: ignore[arg-type]


def test_bad_arguments_are_refused(toy_loaders, make_toy_model) -> None:
    train, test = toy_loaders()
    with pytest.raises(TypeError, match="TrainSettings"):
        Trainer(make_toy_model(), train, test, {"epochs": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TrainHook"):
        Trainer(make_toy_model(), train, test, TrainSettings(device="cpu"), hooks=[object()])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="__len__"):
        Trainer(make_toy_model(), iter(train), test, TrainSettings(device="cpu"))


def test_progress_output_without_a_terminal(toy_loaders, make_toy_model) -> None:
    train, test = toy_loaders()
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=120)
    trainer = Trainer(
        make_toy_model(),
        train,
        test,
        TrainSettings(epochs=2, log_every=2, device="cpu"),
        progress=True,
        console=console,
    )
    trainer.fit()
    text = buffer.getvalue()
    assert "epoch 1/2" in text and "epoch 2/2" in text and "img/s" in text and "test " in text


def test_user_optimizer_and_last_loss(toy_loaders, make_toy_model) -> None:
    train, test = toy_loaders()
    model = make_toy_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    trainer = Trainer(
        model,
        train,
        test,
        TrainSettings(epochs=1, schedule="constant", device="cpu"),
        optimizer=optimizer,
        progress=False,
    )
    assert trainer.last_loss is None
    trainer.fit()
    assert trainer.optimizer is optimizer and optimizer.param_groups[0]["lr"] == 0.02
    assert isinstance(trainer.last_loss, float) and trainer.last_loss > 0
