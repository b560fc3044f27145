"""evaluate(): exact counts on hand-made logits, top-k clipping, mode restore, errors; RNG capture."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from decayprune.train import evaluate, get_rng_state, set_rng_state, set_seed, topk_correct


class FixedLogits(nn.Module):
    """Returns the inputs as logits, so the test chooses every prediction."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def test_topk_correct_counts() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 2.0, 0.0]])
    labels = torch.tensor([0, 1, 3])
    assert topk_correct(logits, labels, (1, 2, 3, 10)).tolist() == [1, 1, 2, 3]


def test_evaluate_exact_values() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [2.0, 0.0, 1.0], [1.0, 2.0, 0.0]])
    labels = torch.tensor([0, 2, 2, 1, 0])
    loader = [(logits[:2], labels[:2]), (logits[2:], labels[2:])]
    model = FixedLogits().train()
    result = evaluate(model, loader)
    assert result["samples"] == 5
    assert result["top1"] == pytest.approx(40.0)
    assert result["top5"] == pytest.approx(100.0)  # k clipped to the 3 classes
    assert result["loss"] == pytest.approx(nn.functional.cross_entropy(logits, labels).item())
    assert model.training  # mode restored
    top2 = evaluate(model, loader, topk=(2,), loss_fn=lambda out, y: (out.sum(1) * 0 + 1).mean())
    assert set(top2) == {"top2", "loss", "samples"} and top2["top2"] == pytest.approx(80.0)
    assert top2["loss"] == pytest.approx(1.0)


def test_evaluate_errors() -> None:
    with pytest.raises(ValueError, match="no samples"):
        evaluate(FixedLogits(), [])
    with pytest.raises(ValueError, match="topk"):
        evaluate(FixedLogits(), [], topk=(0,))


def test_rng_state_roundtrip_covers_every_generator() -> None:
    set_seed(5)
    state = get_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(2), np.random.randn())
    set_seed(99)
    set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(2), np.random.randn())
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2]) and first[3] == again[3]
    assert state["torch"].dtype == torch.uint8 and state["python"]["words"].dtype == torch.uint8
    with pytest.raises(ValueError, match="seed"):
        set_seed(-1)
