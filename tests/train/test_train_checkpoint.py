"""flatten/unflatten round trips and pickle-free, atomic checkpoint folders."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load, load_file, save

from decayprune.train import (
    Trainer,
    TrainHook,
    TrainSettings,
    flatten_state,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    unflatten_state,
)
from decayprune.train import checkpoint as checkpoint_module


def _assert_same(a: object, b: object) -> None:
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


def _roundtrip(nested: object) -> object:
    tensors, skeleton = flatten_state(nested)
    text = json.dumps(skeleton, allow_nan=False)  # strict JSON
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    return unflatten_state(load(save(tensors)), json.loads(text))  # through safetensors bytes


def test_roundtrip_keeps_types_and_values() -> None:
    nested = {
        "state": {0: {"momentum_buffer": torch.randn(3, 2)}, 7: {"step": torch.tensor(4.0)}},
        "groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 7], "fused": None, "flag": True}],
        "weird": {"__tensor__": "not a tensor", "a/b": torch.arange(3), "a": {"b": torch.ones(1)}},
        "numbers": [float("nan"), float("inf"), -float("inf"), 1e-300, np.float32(0.5).item()],
        "array": np.arange(6, dtype=np.uint32).reshape(2, 3),
        "bytes": torch.tensor([1, 255], dtype=torch.uint8),
        "keys": {(1, 2): "tuple key", None: 1, 2.5: [torch.zeros(0)]},
        "empty": {},
    }
    _assert_same(_roundtrip(nested), nested)


def test_tensor_keys_are_paths_and_unique() -> None:
    tensors, skeleton = flatten_state({"a/b": torch.zeros(1), "a": {"b": torch.ones(1)}})
    assert set(tensors) == {"a/b", "a/b~1"}
    assert skeleton["a/b"] == {"__tensor__": "a/b"}


def test_unsupported_value_names_its_path() -> None:
    with pytest.raises(TypeError, match="opt/fn"):
        flatten_state({"opt": {"fn": object()}})


def test_missing_tensor_is_reported() -> None:
    _, skeleton = flatten_state({"w": torch.zeros(2)})
    with pytest.raises(KeyError, match="w"):
        unflatten_state({}, skeleton)


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_optimizer_state_roundtrip_continues_identically(kind: str) -> None:
    torch.manual_seed(0)
    model_a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    model_b = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    make = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
        "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.8, 0.99)),
    }[kind]
    opt_a = make(model_a.parameters())
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))

    def step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step(model_a, opt_a)
    model_b.load_state_dict(model_a.state_dict())
    opt_b = make(model_b.parameters())
    opt_b.load_state_dict(_roundtrip(opt_a.state_dict()))
    assert len(opt_b.state) == len(opt_a.state) == 4  # int keys survived, so no state was dropped
    for _ in range(2):
        step(model_a, opt_a)
        step(model_b, opt_b)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)


class _TensorHook(TrainHook):
    def __init__(self) -> None:
        self.seen = torch.zeros(3)
        self.calls = 0

    def after_step(self, trainer: Trainer) -> None:
        self.seen += 1
        self.calls += 1

    def state_dict(self) -> dict:
        return {"seen": self.seen.clone(), "calls": self.calls, "note": ("x", 1)}

    def load_state_dict(self, state: dict) -> None:
        self.seen, self.calls = state["seen"], state["calls"]
        assert state["note"] == ("x", 1)


@pytest.fixture
def trained(tmp_path: Path, toy_loaders, make_toy_model) -> Trainer:
    train, test = toy_loaders()
    settings = TrainSettings(epochs=2, lr=0.05, batch_size=16, device="cpu", optimizer="adamw")
    trainer = Trainer(
        make_toy_model(0), train, test, settings, run_dir=tmp_path / "run", hooks=[_TensorHook()], progress=False
    )
    trainer.fit()
    return trainer


def test_checkpoint_files_load_without_pickle(trained: Trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = trained.run_dir / "checkpoint"
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "state.json", "state.safetensors"]
    for path in folder.iterdir():
        head = path.read_bytes()[:2]
        assert head != b"PK" and not head.startswith(b"\x80"), f"{path.name} looks like a pickle/zip"

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)

    meta = json.loads((folder / "state.json").read_text())
    weights = load_file(folder / "model.safetensors")
    state = load_file(folder / "state.safetensors")
    assert meta["epoch"] == 2 and meta["global_step"] == 2 * len(trained.train_loader)
    assert meta["settings"]["optimizer"] == "adamw"
    assert sorted(meta["tensor_keys"]) == sorted(state)
    assert any(k.startswith("optimizer/state/") for k in state)
    assert any(k.startswith("rng/") for k in state) and state["rng/torch"].dtype == torch.uint8
    model_state = trained.model.state_dict()
    assert set(weights) == set(model_state)
    assert all(torch.equal(weights[k], model_state[k]) for k in weights)

    # The loader itself works with pickle disabled and restores everything.
    other = Trainer(
        torch.nn.Sequential(*[type(m)(*_args(m)) for m in trained.model]),
        trained.train_loader,
        trained.test_loader,
        trained.settings,
        hooks=[_TensorHook()],
        progress=False,
    )
    load_checkpoint(folder, other)
    assert other.epoch == 2 and other.global_step == trained.global_step
    assert torch.equal(other.hooks[0].seen, trained.hooks[0].seen) and other.hooks[0].calls == trained.hooks[0].calls
    for a, b in zip(other.model.state_dict().values(), trained.model.state_dict().values()):
        assert torch.equal(a, b)
    assert other.scheduler.last_epoch == trained.scheduler.last_epoch
    assert other.optimizer.param_groups[0]["lr"] == trained.optimizer.param_groups[0]["lr"]


def _args(module: torch.nn.Module) -> tuple:
    if isinstance(module, torch.nn.Linear):
        return (module.in_features, module.out_features)
    if isinstance(module, torch.nn.BatchNorm1d):
        return (module.num_features,)
    if isinstance(module, torch.nn.Dropout):
        return (module.p,)
    return ()


def test_load_refuses_other_hooks_and_other_architectures(trained: Trainer, toy_loaders) -> None:
    folder = trained.run_dir / "checkpoint"
    train, test = toy_loaders()
    no_hooks = Trainer(trained.model, train, test, trained.settings, progress=False)
    with pytest.raises(ValueError, match="hooks"):
        load_checkpoint(folder, no_hooks)
    wider = torch.nn.Sequential(
        torch.nn.Linear(6, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(32, 3)
    )
    other = Trainer(wider, train, test, trained.settings, hooks=[_TensorHook()], progress=False)
    with pytest.raises(ValueError, match="does not fit the model"):
        load_checkpoint(folder, other)


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        read_checkpoint_meta(tmp_path / "nothing")


def test_failed_save_keeps_previous_checkpoint(trained: Trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = trained.run_dir / "checkpoint"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    trained.global_step += 1000

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module, "write_json_atomic", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(folder, trained)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(".checkpoint")) == []
    monkeypatch.undo()
    save_checkpoint(folder, trained)
    assert read_checkpoint_meta(folder)["global_step"] == trained.global_step


def test_interrupted_swap_is_recovered(trained: Trainer) -> None:
    folder = trained.run_dir / "checkpoint"
    step = read_checkpoint_meta(folder)["global_step"]
    folder.rename(folder.parent / ".checkpoint.old")  # as if killed between the two renames
    assert read_checkpoint_meta(folder)["global_step"] == step
    assert folder.is_dir() and not (folder.parent / ".checkpoint.old").exists()
