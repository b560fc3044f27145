"""resolve_model: registered names, factories, transformers classes/folders, timm/torchvision specs."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from decayprune.errors import UserError
from decayprune.models import resolve_model

transformers = pytest.importorskip("transformers")
TINY_GPT2 = {"vocab_size": 64, "n_positions": 16, "n_embd": 16, "n_layer": 1, "n_head": 2, "use_cache": False}


def test_transformers_model_class_is_built_from_its_config_class() -> None:
    model = resolve_model("transformers:GPT2LMHeadModel", **TINY_GPT2)
    assert type(model).__name__ == "GPT2LMHeadModel" and model.config.n_embd == 16
    assert model(torch.zeros(1, 8, dtype=torch.long)).logits.shape == (1, 8, 64)


def test_transformers_local_folder_loads_the_saved_weights_and_class(tmp_path: Path) -> None:
    saved = resolve_model("transformers:GPT2LMHeadModel", **TINY_GPT2)
    saved.save_pretrained(tmp_path / "tiny")
    loaded = resolve_model(f"transformers:{tmp_path / 'tiny'}")
    assert type(loaded).__name__ == "GPT2LMHeadModel"
    x = torch.randint(0, 64, (2, 8))
    saved.eval(), loaded.eval()
    assert torch.equal(saved(x).logits, loaded(x).logits)


def test_transformers_unknown_target_names_the_accepted_forms(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="transformers:LlamaForCausalLM"):
        resolve_model(f"transformers:{tmp_path / 'missing'}")


@pytest.mark.parametrize("prefix", ["timm", "torchvision"])
def test_library_not_installed_is_a_clear_error(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, prefix, None)  # import of a None entry raises ImportError
    with pytest.raises(UserError, match=f"needs the {prefix} package, which is not installed"):
        resolve_model(f"{prefix}:resnet18")


def test_timm_spec_calls_create_model_with_the_kwargs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def create_model(name: str, **kwargs: object) -> nn.Module:
        calls.append((name, kwargs))
        return nn.Linear(2, int(kwargs["num_classes"]))  # type: ignore[call-overload]

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    model = resolve_model("timm:resnet18", num_classes=5)
    assert calls == [("resnet18", {"num_classes": 5})] and model.out_features == 5


def test_torchvision_spec_calls_get_model_and_refuses_non_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(models=types.SimpleNamespace(get_model=lambda name, **kw: nn.Identity()))
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    assert isinstance(resolve_model("torchvision:resnet18", weights=None), nn.Identity)
    fake.models.get_model = lambda name, **kw: "not a module"
    with pytest.raises(UserError, match="not a torch.nn.Module"):
        resolve_model("torchvision:resnet18")


def test_empty_target_and_unknown_names() -> None:
    with pytest.raises(UserError, match="give a name after 'timm:'"):
        resolve_model("timm:")
    with pytest.raises(UserError, match="timm:<name>"):
        resolve_model("no_such_model")
