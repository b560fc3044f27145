"""model.name specs, model.kwargs and the loss section are checked when the config loads."""

from __future__ import annotations

import sys

import pytest

from decayprune.config import ConfigError, load_config

LM = {"data.name": "text-bytes", "model.name": "transformers:GPT2LMHeadModel", "loss.name": "causal_lm"}


def _refused(values: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(None, values=values)


def test_library_and_factory_specs_load() -> None:
    cfg = load_config(None, values={**LM, "model.kwargs": {"n_embd": 16}})
    assert cfg.model.kwargs == {"n_embd": 16} and not cfg.model.registered
    assert load_config(None, values={"model.name": "torch.nn:Linear", "model.kwargs": {"in_features": 2}}).model.name


def test_specs_that_cannot_work_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _refused({"model.name": "timm:"}, "give a name after 'timm:'")
    _refused({"model.name": "not a module:f"}, "package.module:factory")
    _refused({"model.name": "resnet20", "model.kwargs": {"depth": 3}}, "kwargs apply to factory")
    _refused({"model.name": "torch.nn:Linear", "model.width": 2.0}, "width applies to registered models")
    monkeypatch.setitem(sys.modules, "timm", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    _refused({"model.name": "timm:resnet18"}, "needs the timm package, which is not installed")


def test_losses_that_do_not_fit_the_data_or_model_are_refused() -> None:
    _refused({"loss.name": "causal_lm"}, "causal_lm needs token sequences")
    _refused({**LM, "loss.name": "cross_entropy"}, "use causal_lm")
    _refused({**LM, "model.name": "small_cnn"}, "registered image classifier")
    _refused({"loss.name": "mse"}, "mse has no counterpart|mse")
    _refused({"loss.name": "focal"}, "cross_entropy")
