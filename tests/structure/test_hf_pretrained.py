"""Hugging Face round trip: a pruned model as a save_pretrained folder where its config can say its widths."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

pytest.importorskip("transformers")

from transformers_zoo import head_zoo  # noqa: E402

from decayprune.errors import UserError  # noqa: E402
from decayprune.structure import StructureSet, compact, load_pruned, save_pruned  # noqa: E402
from decayprune.structure.exactness import output_error  # noqa: E402
from decayprune.structure.heads import HeadGroup  # noqa: E402
from decayprune.structure.hf_pretrained import pruned_hf_config, save_hf_pretrained  # noqa: E402


def _pruned(name: str, *, uniform: bool = True, heads: bool = True, mlp: bool = True):
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, x = head_zoo()[name]()
    s = StructureSet(model, x)
    dead = []
    for i, g in enumerate(s.layers):
        if isinstance(g, HeadGroup) and heads and (uniform or i % 2 == 0):
            dead.append(g.first)
        if not isinstance(g, HeadGroup) and mlp:
            dead += [g.first, g.first + 1]
    s.set_pruned(dead)
    s.zero_pruned_()
    compact(s)
    return model, x


@pytest.mark.parametrize("name", ["llama-gqa", "qwen2-gqa", "vit"])
def test_uniform_heads_and_mlp_round_trip_through_from_pretrained(tmp_path, name: str) -> None:
    model, x = _pruned(name)
    save_hf_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["intermediate_size"] == 62
    assert config["num_attention_heads"] == (2 if "gqa" in name else 3)
    assert not list(tmp_path.glob("*.bin"))  # safetensors, never a pickle
    loaded = type(model).from_pretrained(tmp_path).eval()
    other = torch.randint(1, 99, (2, 11)) if x.dtype == torch.long else torch.randn(2, *x.shape[1:])
    with torch.no_grad():
        assert output_error(model(x), loaded(x)) < 1e-6  # the loaded model may pick another attention kernel
        assert output_error(model(other), loaded(other)) < 1e-6


def test_non_uniform_heads_are_refused_and_load_through_the_spec(tmp_path) -> None:
    model, x = _pruned("llama-gqa", uniform=False)
    config, reason = pruned_hf_config(model)
    assert config is None and "different numbers of attention heads" in str(reason)
    with pytest.raises(UserError, match="save_pruned"):
        save_hf_pretrained(model, tmp_path / "hf")
    save_pruned(model, tmp_path / "m")
    fresh, _ = head_zoo()["llama-gqa"]()
    with torch.no_grad():
        assert output_error(model(x), load_pruned(tmp_path / "m", fresh)(x)) == 0.0


def test_bert_heads_cannot_be_written_in_its_config_but_its_mlp_can(tmp_path) -> None:
    model, _x = _pruned("bert")
    config, reason = pruned_hf_config(model)
    assert config is None and "cannot be built from the updated config" in str(reason)
    model, x = _pruned("bert", heads=False)
    save_hf_pretrained(model, tmp_path)
    loaded = type(model).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert output_error(model(x), loaded(x)) < 1e-6  # the loaded model may pick another attention kernel
