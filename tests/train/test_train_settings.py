"""TrainSettings validation: defaults, ranges, cross-field rules, JSON round trip."""

from __future__ import annotations

import pydantic
import pytest

from decayprune.train import TrainSettings, resolve_device


def test_defaults_follow_the_cifar_protocol() -> None:
    s = TrainSettings()
    assert (s.optimizer, s.lr, s.momentum, s.weight_decay, s.batch_size) == ("sgd", 0.1, 0.9, 5e-4, 128)
    assert s.schedule == "cosine" and s.milestones == [] and s.device == "auto"


def test_every_field_has_a_description() -> None:
    missing = [name for name, info in TrainSettings.model_fields.items() if not info.description]
    assert missing == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lr": -0.1}, "lr"),
        ({"lr": 0}, "lr"),
        ({"epochs": -1}, "epochs"),
        ({"momentum": 1.0}, "momentum"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"schedule": "linear"}, "schedule"),
        ({"learning_rate": 0.1}, "learning_rate"),
        ({"device": "tpu:banana"}, "device"),
        ({"milestones": [5, 3], "epochs": 10}, "milestones"),
        ({"milestones": [0, 3], "epochs": 10}, "milestones"),
    ],
)
def test_bad_values_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        TrainSettings(**kwargs)
    assert field in str(info.value)


def test_unknown_key_is_refused_not_ignored() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        TrainSettings.model_validate({"epochs": 2, "epoch": 3})
    errors = info.value.errors()
    assert errors[0]["type"] == "extra_forbidden" and errors[0]["loc"] == ("epoch",)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"epochs": 10, "milestones": [4, 10]}, "epochs"),
        ({"epochs": 2, "warmup_epochs": 3}, "warmup_epochs"),
        ({"momentum": 0.0, "nesterov": True}, "nesterov"),
    ],
)
def test_cross_field_rules(kwargs: dict, words: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=words):
        TrainSettings(**kwargs)


def test_json_round_trip() -> None:
    s = TrainSettings(epochs=12, schedule="step", milestones=[4, 8], warmup_epochs=1, optimizer="adamw")
    assert TrainSettings.model_validate_json(s.model_dump_json()) == s


def test_resolve_device() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda"}
