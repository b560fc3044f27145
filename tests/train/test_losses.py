"""Losses beyond cross-entropy: causal LM shift, ignore_index, MSE; and the Trainer/evaluate counting them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from decayprune.train import Trainer, TrainSettings, evaluate
from decayprune.train.losses import make_loss, output_tensor


def test_causal_lm_scores_position_t_on_token_t_plus_1() -> None:
    logits, tokens = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 7), tokens[:, 1:].reshape(-1))
    assert torch.allclose(make_loss("causal_lm")(logits, tokens), expected)
    perfect = F.one_hot(torch.cat([tokens[:, 1:], tokens[:, :1]], 1), 7).float() * 50  # predicts the next token
    flat_logits, flat_labels = make_loss("causal_lm").scored(perfect, tokens)
    assert flat_labels.shape == (8,) and bool((flat_logits.argmax(-1) == flat_labels).all())


def test_token_classification_skips_ignore_index() -> None:
    logits, labels = torch.randn(2, 4, 3), torch.tensor([[0, 1, -100, 2], [-100, -100, 1, 0]])
    keep = labels != -100
    expected = F.cross_entropy(logits[keep], labels[keep])
    loss = make_loss("token_classification")
    assert torch.allclose(loss(logits, labels), expected) and loss.scored(logits, labels)[1].numel() == 5
    with pytest.raises(ValueError, match="labels \\(batch, tokens\\)"):
        loss(logits, labels[:, :3])


def test_mse_and_outputs_of_hf_style_models() -> None:
    out = SimpleNamespace(logits=torch.ones(2, 3))
    assert float(make_loss("mse")(out, torch.zeros(2, 3))) == 1.0 and make_loss("mse").scored(out, None) is None
    assert output_tensor((torch.ones(1), None)).shape == (1,)
    with pytest.raises(ValueError, match="label_smoothing"):
        make_loss("mse", label_smoothing=0.1)


class _TinyLM(nn.Module):
    def __init__(self, vocab: int = 11) -> None:
        super().__init__()
        self.embed, self.head = nn.Embedding(vocab, 16), nn.Linear(16, vocab)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.head(torch.tanh(self.embed(tokens)))}


def test_trainer_learns_a_next_token_rule_and_counts_token_accuracy() -> None:
    torch.manual_seed(0)
    tokens = (torch.arange(8).view(-1, 1) + torch.arange(6).view(1, -1)) % 11  # token t+1 = token t + 1
    data = [(tokens, tokens)] * 10
    loss = make_loss("causal_lm")
    model = _TinyLM()
    before = evaluate(model, data[:1], loss_fn=loss)
    settings = TrainSettings(epochs=8, device="cpu", optimizer="adamw", lr=0.05, weight_decay=0.0)
    result = Trainer(model, data, data[:1], settings, loss=loss, progress=False).fit()
    assert before["samples"] == 8 and result.final["samples"] == 8
    assert result.final["top1"] == 100.0 and result.final["loss"] < before["loss"] / 4
    assert result.history[-1]["train_top1"] > 90.0
