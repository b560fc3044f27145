"""Dict (keyword) example inputs: discovery, MACs, exactness checks, the Pruner and check_model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from decayprune import DecaySettings, Pruner, PruneSettings, check_model
from decayprune.measure.inputs import as_inputs, call_model, map_inputs
from decayprune.structure import StructureSet


class KeywordOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 2)

    def forward(self, *, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x))) * scale


def test_input_helpers_keep_the_kind() -> None:
    assert as_inputs({"x": 1}) == {"x": 1} and as_inputs([1, 2]) == (1, 2)
    assert map_inputs({"x": 1}, lambda v: v + 1) == {"x": 2} and map_inputs((1,), str) == ("1",)
    assert call_model(lambda *, x: x * 2, {"x": 3}) == 6


def test_keyword_only_module_prunes_with_dict_inputs() -> None:
    inputs = {"x": torch.randn(1, 4), "scale": torch.ones(1)}
    s = StructureSet(KeywordOnly(), inputs, verify=True)
    assert [g.name for g in s.layers] == ["a"] and s.macs() > 0
    report = check_model(KeywordOnly(), inputs, steps=4)
    assert report.passed and report.error is not None and report.error < 1e-5, report.message


def test_pruner_accepts_dict_inputs() -> None:
    torch.manual_seed(0)
    model, inputs = KeywordOnly(), {"x": torch.randn(2, 4), "scale": torch.ones(1)}
    settings = PruneSettings(
        method="random", target_macs_fraction=0.6, iterative_steps=1, decay=DecaySettings(policy="oneshot")
    )
    pruner = Pruner(model, inputs, settings, total_steps=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    pruner.bind(optimizer)
    for _ in range(4):
        optimizer.zero_grad()
        model(**inputs).square().mean().backward()
        pruner.after_backward()
        optimizer.step()
        pruner.after_step()
    pruner.finish()
    pruner.compact()
    assert model.a.out_features < 8


def test_hf_bert_with_input_ids_and_attention_mask() -> None:
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    model = transformers.BertModel(config).eval()
    mask = torch.ones(1, 8, dtype=torch.long)
    mask[0, -2:] = 0
    inputs = {"input_ids": torch.randint(0, 50, (1, 8)), "attention_mask": mask}
    s = StructureSet(model, inputs)
    assert any(g.name.endswith("attention.self.query") for g in s.layers) and s.macs() > 0
    report = check_model(model, inputs, steps=3)
    assert report.passed and report.error is not None and report.error < 1e-5, report.message
    assert report.macs_after is not None and report.macs_before is not None
    assert report.macs_after < report.macs_before
