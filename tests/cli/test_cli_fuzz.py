"""Random configs and overrides thrown at the loader and the CLI: only validation errors come out."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decayprune.cli import main
from decayprune.config import load_config
from decayprune.errors import ConfigError

KEYS = [
    "name",
    "output_dir",
    "data",
    "data.name",
    "data.train_subset",
    "data.seed",
    "model.name",
    "model.width",
    "train.lr",
    "train.epochs",
    "train.batch_size",
    "train.schedule",
    "train.device",
    "train.milestones",
    "prune",
    "prune.method",
    "prune.target_macs_fraction",
    "prune.speed_up",
    "prune.decay.policy",
    "prune.decay.steps",
    "prune.method_options",
    "prune.start_epoch",
    "finetune.epochs",
    "pretrain",
    "bogus",
]
YAML_VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            "null",
            "1e-4",
            "-1",
            "0",
            "1e8",
            "nan",
            ".inf",
            "[1, 2]",
            "{a: 1}",
            "sp+sr",
            "cpu",
            "yes",
            "depgraph",
            "digits",
            "'x'",
            "{",
            "]",
            "!!python/object:os.system",
            "0x10",
            "1_000",
        ]
    ),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True).map(repr),
)
OVERRIDES = st.lists(st.tuples(st.sampled_from(KEYS), YAML_VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=4)


@settings(max_examples=150, deadline=None)
@given(overrides=OVERRIDES)
def test_random_overrides_give_a_config_or_a_config_error(overrides: list[str]) -> None:
    try:
        load_config(None, overrides)
    except ConfigError as exc:
        assert str(exc).startswith("invalid configuration")


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=60))
def test_random_yaml_files_give_a_config_or_a_config_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=OVERRIDES)
def test_the_cli_answers_bad_overrides_with_exit_2(
    overrides: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a for o in overrides for a in ("--set", o)]
    # The weights file is missing: a valid config still ends in one error line, after the data is read.
    code = main(["eval", "--weights", str(tmp_path / "absent.safetensors"), *args, "--set", "data.name=digits"])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 2 and "Traceback" not in out + err
    messages = [line for line in lines if not line.startswith("warning: ")]
    assert messages[0].startswith("error: ") and not any(line.startswith("error") for line in messages[1:])
    assert "\x1b" not in err  # control characters of a value are shown escaped, never sent to the terminal


def test_a_tilde_for_an_unknown_user_is_a_config_error() -> None:
    # Found by the fuzz test above: Path.expanduser raises RuntimeError for "~name" of no known user.
    with pytest.raises(ConfigError, match="cannot expand '~'"):
        load_config(None, ["output_dir=~no-such-user-here"])
