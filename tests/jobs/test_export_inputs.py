"""export_model with tuple and dict example inputs (torch.export and ONNX), and a token model's run files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from decayprune.jobs import LoadedModel, export_model
from decayprune.structure import save_pruned


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed, self.head = nn.Embedding(10, 8), nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.embed(input_ids) * attention_mask.unsqueeze(-1)
        return self.head(h.sum(1))


def _loaded(tmp_path: Path) -> LoadedModel:
    torch.manual_seed(0)
    model = _TwoInputs().eval()
    save_pruned(model, tmp_path / "m", arch=None)
    return LoadedModel(model, {"input_shape": [5], "input_dtype": "int64"}, tmp_path / "m.safetensors")


def _inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(batch)
    return torch.randint(0, 10, (batch, 5), generator=g), (torch.rand(batch, 5, generator=g) > 0.3).float()


@pytest.mark.parametrize("form", ["tuple", "dict"])
def test_pt2_export_takes_tuple_and_dict_inputs_with_a_dynamic_batch(tmp_path: Path, form: str) -> None:
    loaded = _loaded(tmp_path)
    ids, mask = _inputs(2)
    example = (ids, mask) if form == "tuple" else {"input_ids": ids, "attention_mask": mask}
    export_model(loaded, tmp_path / "out", formats=["pt2"], example_inputs=example)
    program = torch.export.load(str(tmp_path / "out" / "model.pt2")).module()
    ids, mask = _inputs(7)  # another batch size than the one traced
    got = program(ids, mask) if form == "tuple" else program(input_ids=ids, attention_mask=mask)
    assert torch.allclose(got, loaded.model(ids, mask), atol=1e-6)


def test_onnx_export_names_the_dict_inputs(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    loaded = _loaded(tmp_path)
    ids, mask = _inputs(2)
    export_model(loaded, tmp_path / "out", formats=["onnx"], example_inputs={"input_ids": ids, "attention_mask": mask})
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    ids, mask = _inputs(3)
    (got,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    assert torch.allclose(torch.from_numpy(got), loaded.model(ids, mask), atol=1e-5)


def test_a_token_spec_gives_int64_example_ids(tmp_path: Path) -> None:
    example = _loaded(tmp_path).example_input(2)
    assert example.dtype == torch.int64 and example.shape == (2, 5)
