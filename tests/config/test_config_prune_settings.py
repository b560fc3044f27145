"""PruneSettings: typed method and criterion options are checked when a config file is read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from decayprune.config import ConfigError, PruneSettings, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_yaml_exponent_without_dot_loads_as_a_float(tmp_path: Path) -> None:
    # YAML 1.1 reads 1e-4 as a string; the method's Options model turns it into a float.
    cfg = load_config(write(tmp_path, "prune:\n  method_options: {sparse_lambda: 1e-4}\n  target_macs_fraction: 0.5\n"))
    assert cfg.prune.method_options["sparse_lambda"] == pytest.approx(1e-4)
    assert isinstance(cfg.prune.method_options["sparse_lambda"], float)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("{sparse_lambda: -1}", "sparse_lambda: got -1; must be greater than or equal to 0"),
        (
            "{sparse_lamda: 0.1}",
            "sparse_lamda: got 0.1; unknown key, allowed keys here: ranking, max_layer_ratio, layer_caps, "
            "backfill, sparse_lambda, regularizer, alpha, sparse_phase, progressive_steps; "
            "did you mean 'sparse_lambda'?",
        ),
        ("{ranking: sideways}", "ranking: got 'sideways'; allowed: 'global', 'layer'"),
    ],
)
def test_bad_method_option_fails_at_load_naming_key_value_and_allowed(
    tmp_path: Path, options: str, expected: str
) -> None:
    path = write(tmp_path, f"prune:\n  method_options: {options}\n  target_macs_fraction: 0.5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "prune.method_options" in str(info.value) and expected in str(info.value)


def test_criterion_and_its_options_are_checked() -> None:
    s = PruneSettings(method="iterative", criterion="random", criterion_options={"seed": "3"}, target_macs_fraction=0.5)
    assert s.criterion_options == {"seed": 3}
    with pytest.raises(ValidationError, match="criterion_options: seed: got -1"):
        PruneSettings(method="iterative", criterion="random", criterion_options={"seed": -1}, target_macs_fraction=0.5)
    with pytest.raises(ValidationError, match="got 'randon'; allowed: .*did you mean 'random'"):
        PruneSettings(method="iterative", criterion="randon", target_macs_fraction=0.5)


def test_default_criterion_comes_from_the_method() -> None:
    assert PruneSettings(method="depgraph", target_macs_fraction=0.5).criterion_name() == "group_norm"
    assert PruneSettings(method="l1", target_macs_fraction=0.5).criterion_name() == "l1_filter"
    assert PruneSettings(method="l1", criterion="l2_filter", target_macs_fraction=0.5).criterion_name() == "l2_filter"


def test_option_defaults_are_filled_so_a_round_trip_is_equal() -> None:
    s = PruneSettings(method="depgraph", target_macs_fraction=0.5)
    assert s.method_options == {
        "ranking": "layer",
        "max_layer_ratio": 0.9,
        "layer_caps": {},
        "backfill": "budget",
        "sparse_lambda": 0.0,
        "regularizer": "depgraph",
        "alpha": 16.0,
        "sparse_phase": "pruning",
        "progressive_steps": 1,
    }
    assert PruneSettings.model_validate_json(s.model_dump_json()) == s


def test_prune_runs_train_with_finetune() -> None:
    with pytest.raises(ConfigError, match="rename 'train' to 'finetune'"):
        load_config(None, ["prune.target_macs_fraction=0.5", "train.epochs=2"])
    with pytest.raises(ConfigError, match="only apply to prune runs"):
        load_config(None, ["finetune.epochs=2"])
    cfg = load_config(None, ["prune.target_macs_fraction=0.5", "finetune.epochs=2"])
    assert cfg.run_settings.epochs == 2
