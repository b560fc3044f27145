"""PrunerCallback inside the real transformers.Trainer: call points, accumulation, DHSPG's optimizer, exactness."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from decayprune import Pruner, PruneSettings  # noqa: E402
from decayprune.config import TrainSettings  # noqa: E402
from decayprune.integrations import PrunerCallback  # noqa: E402

STEPS = 12


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=1, n_head=2, use_cache=False)
    return transformers.GPT2LMHeadModel(config)


def _data(count: int = 48) -> list[dict[str, torch.Tensor]]:
    tokens = (torch.arange(count).view(-1, 1) + torch.arange(16).view(1, -1)) % 64
    return [{"input_ids": t, "labels": t} for t in tokens]


def _args(tmp_path: Path, **extra: object) -> object:
    return transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=STEPS,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        **extra,
    )


class _Counting(Pruner):
    def __init__(self, *args: object, **kwargs: object) -> None:
        self.calls: list[str] = []
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def after_backward(self, trainer: object = None) -> None:
        self.calls.append("b" if all(p.grad is not None for p in self.model.parameters()) else "b before grads")
        super().after_backward(trainer)

    def after_step(self, trainer: object = None) -> None:
        self.calls.append("s")
        super().after_step(trainer)


def _settings(**extra: object) -> PruneSettings:
    return PruneSettings(target_macs_fraction=0.8, iterative_steps=2, decay={"policy": "sp", "steps": 3}, **extra)


def test_hf_trainer_drives_the_pruner_once_per_optimizer_step(tmp_path: Path) -> None:
    model = _model()
    example = torch.zeros(1, 16, dtype=torch.long)
    pruner = _Counting(model, example, _settings(), total_steps=STEPS)
    callback = PrunerCallback(pruner, compact_at_end=False)
    trainer = transformers.Trainer(
        model=model, args=_args(tmp_path, gradient_accumulation_steps=2), train_dataset=_data(), callbacks=[callback]
    )
    trainer.train()
    assert trainer.state.global_step == STEPS and pruner.step == STEPS
    assert pruner.calls == ["b", "s"] * STEPS  # one pair per optimizer step, not per micro-batch
    assert pruner.optimizer is trainer.optimizer.optimizer  # the torch optimizer inside accelerate's wrapper
    assert int(pruner.structures.pruned.sum()) > 0
    model.eval()
    batch = torch.randint(0, 64, (3, 16))
    masked = model(batch).logits.detach()
    params = sum(p.numel() for p in model.parameters())
    pruner.compact()
    compacted = model(batch).logits.detach()
    assert sum(p.numel() for p in model.parameters()) < params
    assert float((compacted - masked).norm() / masked.norm()) < 1e-5


def test_a_method_owned_optimizer_reaches_the_trainer(tmp_path: Path) -> None:
    model = _model()
    pruner = Pruner(model, torch.zeros(1, 16, dtype=torch.long), _settings(method="otov2"), total_steps=STEPS)
    optimizer = pruner.build_optimizer(TrainSettings(optimizer="sgd", lr=0.01))
    assert type(optimizer).__name__ == "DHSPG"
    callback = PrunerCallback(pruner)
    trainer = transformers.Trainer(
        model=model, args=_args(tmp_path), train_dataset=_data(), callbacks=[callback], optimizers=(optimizer, None)
    )
    trainer.train()
    assert trainer.optimizer.optimizer is optimizer and pruner.optimizer is optimizer and pruner.step == STEPS
    assert callback.report is not None and int(pruner.structures.pruned.sum()) > 0


@pytest.mark.filterwarnings("ignore:pruning ended")
def test_a_step_count_mismatch_is_warned_and_another_model_refused(tmp_path: Path) -> None:
    model = _model()
    pruner = Pruner(model, torch.zeros(1, 16, dtype=torch.long), _settings(), total_steps=STEPS * 2)
    trainer = transformers.Trainer(
        model=model, args=_args(tmp_path), train_dataset=_data(), callbacks=[PrunerCallback(pruner)]
    )
    with pytest.warns(UserWarning, match="total_steps=24"):
        trainer.train()
    other = transformers.Trainer(
        model=_model(), args=_args(tmp_path), train_dataset=_data(), callbacks=[PrunerCallback(pruner)]
    )
    with pytest.raises(ValueError, match="not the model the Pruner was built on"):
        other.train()


def test_a_create_optimizer_override_hands_over_the_method_optimizer(tmp_path: Path) -> None:
    model = _model()
    pruner = Pruner(model, torch.zeros(1, 16, dtype=torch.long), _settings(method="otov2"), total_steps=STEPS)

    class PrunerTrainer(transformers.Trainer):
        def create_optimizer(self, model: object = None) -> torch.optim.Optimizer:
            if self.optimizer is None:
                self.optimizer = pruner.build_optimizer(TrainSettings(optimizer="sgd", lr=0.01))
            return self.optimizer

    trainer = PrunerTrainer(
        model=model, args=_args(tmp_path), train_dataset=_data(), callbacks=[PrunerCallback(pruner)]
    )
    trainer.train()
    assert type(pruner.optimizer).__name__ == "DHSPG" and trainer.optimizer.optimizer is pruner.optimizer
    assert pruner.step == STEPS
