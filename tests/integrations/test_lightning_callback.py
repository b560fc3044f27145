"""LightningPrunerCallback inside the real lightning.Trainer: call points, accumulation, exactness."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

L = pytest.importorskip("lightning")

from decayprune import Pruner, PruneSettings  # noqa: E402
from decayprune.integrations import LightningPrunerCallback  # noqa: E402

STEPS = 10


class _Module(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


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


def test_lightning_trainer_drives_the_pruner_once_per_optimizer_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = _Module()
    settings = PruneSettings(target_macs_fraction=0.6, iterative_steps=2, decay={"policy": "sp", "steps": 3})
    pruner = _Counting(module.net, torch.zeros(1, 8), settings, total_steps=STEPS)
    callback = LightningPrunerCallback(pruner, compact_at_end=False)
    data = torch.utils.data.TensorDataset(torch.randn(80, 8), torch.randint(0, 3, (80,)))
    trainer = L.Trainer(
        max_steps=STEPS,
        accumulate_grad_batches=2,
        callbacks=[callback],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
    assert trainer.global_step == STEPS and pruner.step == STEPS
    assert pruner.calls == ["b", "s"] * STEPS  # accumulation: one pair per optimizer step
    assert pruner.optimizer is trainer.optimizers[0] and int(pruner.structures.pruned.sum()) > 0
    module.eval()
    x = torch.randn(5, 8)
    masked = module(x).detach()
    pruner.compact()
    assert module.net[0].out_features < 32
    assert float((module(x).detach() - masked).norm() / masked.norm()) < 1e-5
