"""Tests for the decayprune command line (decayprune.cli and python -m decayprune)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from decayprune.cli import COMMANDS, main
from decayprune.config import load_config
from decayprune.measure import count_cost
from decayprune.models import create

TINY = ["--set", "data.train_subset=96", "--set", "data.test_subset=48", "--set", "train.batch_size=32"]


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _train(capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str) -> tuple[int, str, str]:
    argv = [
        "train",
        *TINY,
        "--set",
        "train.epochs=1",
        "--output-dir",
        str(tmp_path),
        "--name",
        "tiny",
        "--no-progress",
    ]
    return _run(capsys, argv + list(extra))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny digits run shared by the tests that read its outputs."""
    out = tmp_path_factory.mktemp("runs")
    code = main(
        [
            "train",
            *TINY,
            "--set",
            "train.epochs=1",
            "--output-dir",
            str(out),
            "--name",
            "tiny",
            "--no-progress",
        ]
    )
    assert code == 0
    return out / "tiny"


# ----------------------------------------------------------------------------- errors: exit 2


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--set", "train.lrr=0.1"], ["train.lrr: got 0.1; unknown key", "did you mean 'lr'?"]),
        (["train", "--set", "train.epochs=lots"], ["train.epochs: got 'lots'; must be a valid integer"]),
        (["train", "--set", "train.lr=-1"], ["train.lr: got -1; must be greater than 0"]),
        (["train", "--set", "data.name=mnistt"], ["data.name: got 'mnistt'; allowed:", "digits"]),
        (
            ["eval", "--weights", "w.safetensors", "--set", "model.name=resnet"],
            ["model.name: got 'resnet'; allowed:"],
        ),
        (["train", "--set", "train.lr"], ["override 'train.lr': expected KEY=VALUE"]),
    ],
)
def test_config_errors_exit_2_without_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], expected: list[str]
) -> None:
    code, out, err = _run(capsys, [*argv, "--set", f"output_dir={tmp_path}"])
    assert code == 2
    assert "Traceback" not in err + out
    assert err.startswith("error: ")
    for text in expected:
        assert text in err
    assert not any(tmp_path.iterdir()), "a refused config must not create a run folder"


def test_missing_data_dir_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(
        capsys, ["train", "--data-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path)]
    )
    assert code == 2 and "Traceback" not in err
    assert f"data.data_dir: folder '{tmp_path / 'nope'}' does not exist" in err


def test_yaml_syntax_error_and_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: 0.1\n", encoding="utf-8")
    code, _, err = _run(capsys, ["train", "--config", str(bad)])
    assert code == 2 and "Traceback" not in err
    assert "YAML syntax error at line" in err and str(bad) in err

    code, _, err = _run(capsys, ["eval", "--config", str(tmp_path / "absent.yaml"), "--weights", "w"])
    assert code == 2 and "Traceback" not in err
    assert f"config file '{tmp_path / 'absent.yaml'}' does not exist" in err


def test_missing_dataset_files_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./data folder to be found
    for var in [v for v in os.environ if v.startswith("DECAYPRUNE")]:
        monkeypatch.delenv(var)
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run(
        capsys, ["train", "--set", "data.name=cifar10", "--data-dir", str(empty), "--no-progress"]
    )
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: ") and str(empty) in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["train", "--bogus"],
        ["measure"],
        ["measure", "--model", "resnet20", "--input-shape", "3,32"],
        ["measure", "--model", "resnet20", "--repeats", "0"],
    ],
)
def test_argparse_misuse_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = _run(capsys, argv)
    assert code == 2
    assert "Traceback" not in out + err
    assert "error" in err


def test_unknown_model_for_measure(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, ["measure", "--model", "resnet200"])
    assert code == 2 and "Traceback" not in err
    assert "--model: got 'resnet200'" in err and "resnet20" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, ["--help"])
    assert code == 0
    for name in ("train", "eval", "measure"):
        assert name in out
    code, out, _ = _run(capsys, ["train", "--help"])
    assert code == 0
    for option in ("--config", "--set", "--resume", "--name", "--output-dir", "--data-dir", "--no-progress"):
        assert option in out


def test_every_option_has_help() -> None:
    from decayprune.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, child in sub.choices.items():  # type: ignore[union-attr]
        for action in child._actions:
            assert action.help, f"option {action.option_strings} of {name!r} has no help"
    assert set(COMMANDS) <= set(sub.choices)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- measure


def test_measure_resnet20(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, ["measure", "--model", "resnet20", "--repeats", "2", "--warmup", "0"])
    assert code == 0, err
    assert "MACs" in out and "params" in out and "latency" in out


def test_measure_json_matches_count_cost(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["measure", "--model", "mlp", "--input-shape", "1,8,8", "--width", "0.5", "--num-classes", "4"]
    code, out, err = _run(capsys, [*argv, "--batch-size", "3", "--repeats", "2", "--warmup", "0", "--json"])
    assert code == 0, err
    record = json.loads(out)
    expected = count_cost(
        create("mlp", num_classes=4, in_channels=1, width=0.5, image_size=(8, 8)), torch.zeros(1, 1, 8, 8)
    )
    assert (record["macs"], record["params"]) == (expected.macs, expected.params)
    assert record["batch_size"] == 3 and record["latency_median_ms"] > 0 and record["throughput_per_s"] > 0


# ----------------------------------------------------------------------------- train / eval


def test_train_writes_run_folder(trained_run: Path) -> None:
    names = {p.name for p in trained_run.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "checkpoint", "model.safetensors", "result.json"} <= names
    cfg = load_config(trained_run / "config.yaml")
    assert cfg.name == "tiny" and cfg.train.epochs == 1 and cfg.data.train_subset == 96

    result = json.loads((trained_run / "result.json").read_text(encoding="utf-8"))
    assert result["kind"] == "train" and result["epochs"] == 1
    assert 0.0 <= result["top1"] <= result["top5"] <= 100.0
    assert result["test_samples"] == 48
    model = create("small_cnn", num_classes=10, in_channels=1)
    cost = count_cost(model, torch.zeros(1, 1, 8, 8))
    assert (result["macs"], result["params"]) == (cost.macs, cost.params)
    assert (trained_run / "metrics.jsonl").read_text(encoding="utf-8").strip()

    # The saved weights load into a fresh model of the configured architecture.
    model.load_state_dict(load_file(str(trained_run / "model.safetensors")))


def test_eval_reproduces_train_result(capsys: pytest.CaptureFixture[str], trained_run: Path) -> None:
    result = json.loads((trained_run / "result.json").read_text(encoding="utf-8"))
    code, out, err = _run(
        capsys,
        [
            "eval",
            "--config",
            str(trained_run / "config.yaml"),
            "--weights",
            str(trained_run / "model.safetensors"),
            "--json",
        ],
    )
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["samples"] == 48
    assert metrics["top1"] == pytest.approx(result["top1"])
    code, out, err = _run(capsys, ["eval", "--run", str(trained_run)])
    assert code == 0, err
    assert "top-1" in out and f"{result['top1']:.2f}%" in out


def test_eval_refuses_weights_of_another_model(capsys: pytest.CaptureFixture[str], trained_run: Path) -> None:
    code, _, err = _run(
        capsys, ["eval", "--weights", str(trained_run / "model.safetensors"), "--set", "model.width=2", *TINY]
    )
    assert code == 2 and "Traceback" not in err
    assert "do not fit the model" in err


def test_eval_without_weights(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, ["eval"])
    assert code == 2 and "--weights" in err


def test_train_refuses_to_overwrite_and_resume_needs_checkpoint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = _run(
        capsys, ["train", "--resume", "--output-dir", str(tmp_path), "--name", "never", *TINY]
    )
    assert code == 2 and "Traceback" not in err
    assert "cannot resume" in err and "checkpoint" in err

    code, _, err = _train(capsys, tmp_path)
    assert code == 0, err
    code, _, err = _train(capsys, tmp_path)
    assert code == 2 and "already holds a run" in err

    # --resume without --config picks up the saved config; --set extends the training.
    code, _, err = _run(
        capsys,
        [
            "train",
            "--resume",
            "--set",
            "train.epochs=2",
            "--output-dir",
            str(tmp_path),
            "--name",
            "tiny",
            "--no-progress",
        ],
    )
    assert code == 0, err
    assert "warning: resuming with settings that differ" in err  # shown as one line, not a traceback
    result = json.loads((tmp_path / "tiny" / "result.json").read_text(encoding="utf-8"))
    assert result["epochs"] == 2
    assert load_config(tmp_path / "tiny" / "config.yaml").data.train_subset == 96

    code, _, err = _train(capsys, tmp_path, "--overwrite")
    assert code == 0, err
    assert json.loads((tmp_path / "tiny" / "result.json").read_text(encoding="utf-8"))["epochs"] == 1


def test_python_m_decayprune_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "decayprune", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "train" in proc.stdout and "measure" in proc.stdout

