"""Tests for decayprune.config: loading, overrides, error messages, dump/load round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from decayprune.config import ConfigError, DataConfig, ModelConfig, RunConfig, dump_config, load_config
from decayprune.data import list_datasets
from decayprune.models import list_models
from decayprune.train import TrainSettings


def _write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path | None, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides or [])
    assert info.value.problems, "ConfigError must list at least one problem"
    assert all(p in str(info.value) for p in info.value.problems)
    return info.value.problems


def test_defaults_without_file() -> None:
    cfg = load_config(None)
    assert cfg == RunConfig()
    assert (cfg.data.name, cfg.model.name) == ("digits", "small_cnn")
    assert cfg.run_dir == Path("runs") / "run"
    assert isinstance(cfg.train, TrainSettings)


def test_yaml_file_and_overrides(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "name: exp1\ndata:\n  train_subset: 100\nmodel:\n  width: 0.5\ntrain:\n  epochs: 3\n  lr: 0.2\n",
    )
    cfg = load_config(path, ["train.lr=0.05", "train.amp=true", "train.schedule=step", "train.milestones=[1, 2]"])
    assert cfg.name == "exp1"
    assert cfg.data.train_subset == 100
    assert cfg.model.width == 0.5
    assert cfg.train.epochs == 3
    assert cfg.train.lr == 0.05 and isinstance(cfg.train.lr, float)
    assert cfg.train.amp == "fp16"  # the older boolean form
    assert cfg.train.milestones == [1, 2]


def test_override_creates_sections_and_typed_values(tmp_path: Path) -> None:
    cfg = load_config(None, ["data.test_subset=50", "name=123"], values={"output_dir": str(tmp_path)})
    assert cfg.data.test_subset == 50
    assert cfg.name == "123"  # a number given for a string field is kept as text
    assert cfg.output_dir == tmp_path
    # An empty value means null: back to "use everything".
    assert load_config(None, ["data.test_subset=50", "data.test_subset="]).data.test_subset is None


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.lr", "expected KEY=VALUE"),
        ("train..lr=1", "not a dotted key"),
        ("train.lr.x=1", "train.lr is a value"),
    ],
)
def test_malformed_overrides(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="override") as info:
        load_config(None, ["train.lr=0.1", override])
    assert expected in str(info.value)


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    (problem,) = _problems(_write(tmp_path, "train:\n  lrr: 0.1\n"))
    assert problem.startswith("train.lrr: got 0.1; unknown key")
    assert "did you mean 'lr'?" in problem
    assert "weight_decay" in problem  # the allowed keys of that section are listed


def test_unknown_section_suggests_the_closest() -> None:
    (problem,) = _problems(None, ["trian.epochs=2"])
    assert problem.startswith("trian: got {'epochs': 2}; unknown key")
    assert "did you mean 'train'?" in problem


def test_unknown_key_without_close_match_has_no_suggestion() -> None:
    (problem,) = _problems(None, ["model.zzzzzz=1"])
    assert "model.zzzzzz: got 1; unknown key" in problem
    assert "did you mean" not in problem


def test_wrong_type() -> None:
    (problem,) = _problems(None, ["train.epochs=many"])
    assert problem.startswith("train.epochs: got 'many'; must be a valid integer")


def test_negative_lr() -> None:
    (problem,) = _problems(None, ["train.lr=-0.1"])
    assert problem == "train.lr: got -0.1; must be greater than 0"


def test_literal_lists_allowed_values() -> None:
    (problem,) = _problems(None, ["train.optimizer=sgdd"])
    assert problem.startswith("train.optimizer: got 'sgdd'; allowed: 'sgd', 'adamw'")
    assert "did you mean 'sgd'?" in problem


def test_list_item_location() -> None:
    (problem,) = _problems(None, ["train.epochs=5", "train.milestones=[1, x]"])
    assert problem.startswith("train.milestones[1]: got 'x'; must be a valid integer")


def test_section_must_be_a_mapping() -> None:
    (problem,) = _problems(None, ["model=resnet20"])
    assert problem.startswith("model: got 'resnet20'; must be a mapping with keys name, kwargs, width, weights")


def test_all_problems_reported_at_once() -> None:
    problems = _problems(None, ["train.lr=0", "model.width=-1", "data.train_subset=0"])
    keys = sorted(p.split(":")[0] for p in problems)
    assert keys == ["data.train_subset", "model.width", "train.lr"]


def test_missing_data_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    (problem,) = _problems(None, [f"data.data_dir={missing}"])
    assert problem.startswith(f"data.data_dir: folder '{missing}' does not exist")


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    file = _write(tmp_path, "x", name="file.txt")
    (problem,) = _problems(None, [f"data.data_dir={file}"])
    assert "is a file, not a folder" in problem


def test_existing_data_dir_is_accepted(tmp_path: Path) -> None:
    assert load_config(None, [f"data.data_dir={tmp_path}"]).data.data_dir == tmp_path


def test_bad_dataset_name_lists_allowed() -> None:
    (problem,) = _problems(None, ["data.name=digitz"])
    assert problem.startswith("data.name: got 'digitz'; allowed: ")
    for name in list_datasets():
        assert name in problem
    assert "did you mean 'digits'?" in problem


def test_bad_model_name_lists_allowed() -> None:
    (problem,) = _problems(None, ["model.name=resnet21"])
    assert problem.startswith("model.name: got 'resnet21'; allowed: ")
    assert all(name in problem for name in list_models())


def test_missing_weights_file(tmp_path: Path) -> None:
    (problem,) = _problems(None, [f"model.weights={tmp_path / 'w.safetensors'}"])
    assert problem.startswith("model.weights: file ") and "does not exist" in problem


@pytest.mark.parametrize("name", ["a/b", "../up", ".hidden", "", "x" * 101, "with space"])
def test_unsafe_run_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=r"name: got .*letters, digits"):
        load_config(None, values={"name": name})


@pytest.mark.parametrize("name", ["run", "exp-1.b_2", "0"])
def test_safe_run_names(name: str) -> None:
    assert load_config(None, values={"name": name}).name == name


def test_cross_field_error_of_train_section() -> None:
    (problem,) = _problems(None, ["train.epochs=2", "train.warmup_epochs=3"])
    assert problem.startswith("train: ") and "warmup_epochs" in problem


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  lr: 0.1\n  epochs: [1, 2\n")
    (problem,) = _problems(path)
    assert problem.startswith("YAML syntax error at line")
    with pytest.raises(ConfigError, match=str(path).replace("\\", "\\\\")):
        load_config(path)


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    (problem,) = _problems(_write(tmp_path, "train:\n  lr: 0.1\n  lr: 0.2\n"))
    assert "duplicate key 'lr'" in problem


def test_missing_file(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path / "absent.yaml")
    assert problem == f"config file '{tmp_path / 'absent.yaml'}' does not exist"


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    (problem,) = _problems(_write(tmp_path, "- a\n- b\n"))
    assert problem.startswith("top level: got a list; expected a mapping")


@pytest.mark.parametrize("text", ["# nothing\n", "", "{}\n"])
def test_empty_file_is_an_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="the file is empty; give at least one section"):
        load_config(_write(tmp_path, text))


def test_dump_load_round_trip(tmp_path: Path) -> None:
    weights = _write(tmp_path, "not read here", name="w.safetensors")
    cfg = RunConfig(
        name="round-trip",
        output_dir=tmp_path / "out",
        data=DataConfig(name="digits", data_dir=tmp_path, seed=3, train_subset=10, test_subset=7),
        model=ModelConfig(name="resnet20", width=0.25, weights=weights),
        train=TrainSettings(epochs=4, lr=0.03, schedule="step", milestones=[1, 3], optimizer="adamw", amp=True),
    )
    out = dump_config(cfg, tmp_path / "run" / "config.yaml")
    assert out == tmp_path / "run" / "config.yaml"
    assert sorted(p.name for p in out.parent.iterdir()) == ["config.yaml"]  # no temp files left
    text = out.read_text(encoding="utf-8")
    assert yaml.safe_load(text)["train"]["milestones"] == [1, 3]
    assert load_config(out) == cfg
    # The defaults round-trip too, and dumping again gives the same text.
    assert load_config(dump_config(RunConfig(), tmp_path / "d.yaml")) == RunConfig()
    assert dump_config(load_config(out), tmp_path / "again.yaml").read_text(encoding="utf-8") == text


def test_every_field_has_a_description() -> None:
    for model in (DataConfig, ModelConfig, RunConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_home_folder_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "data").mkdir()
    cfg = load_config(None, ["data.data_dir=~/data", "output_dir=~/runs"])
    assert cfg.data.data_dir == tmp_path / "data"
    assert cfg.output_dir == tmp_path / "runs"


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_are_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name and cfg.train.epochs >= 1


def test_messages_for_sections_the_lead_may_add() -> None:
    """Optional sections, mappings, lists of sections and unions keep readable keys."""
    from typing import Literal

    from pydantic import BaseModel, ConfigDict, Field, ValidationError

    from decayprune.config.messages import validation_problems as _validation_problems

    class Step(BaseModel):
        model_config = ConfigDict(extra="forbid")
        ratio: float = Field(0.5, gt=0, lt=1)
        policy: Literal["oneshot", "sp", "sp+sr"] = "sp"

    class Prune(BaseModel):
        model_config = ConfigDict(extra="forbid")
        per_layer: dict[str, float] = {}
        steps: list[Step] = []
        target: int | str | None = None

    class Root(BaseModel):
        model_config = ConfigDict(extra="forbid")
        prune: Prune | None = None

    data = {
        "prune": {
            "per_layer": {"conv1": "half"},
            "steps": [{"ratio": 0.2}, {"ratio": 2, "polcy": "sp"}],
            "target": [1],
        }
    }
    with pytest.raises(ValidationError) as info:
        Root.model_validate(data)
    problems = _validation_problems(info.value, Root)
    assert problems == [
        "prune.per_layer.conv1: got 'half'; must be a valid number, unable to parse string as a number",
        "prune.steps[1].ratio: got 2; must be less than 1",
        "prune.steps[1].polcy: got 'sp'; unknown key, allowed keys here: ratio, policy; did you mean 'policy'?",
        "prune.target: got [1]; must be a valid integer, or must be a valid string",
    ]
