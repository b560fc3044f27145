"""The entry point: command list, help, usage errors and one-line user errors (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_testing import run_cli

from decayprune.cli import COMMAND_MODULES, COMMANDS, build_parser


def test_every_command_module_has_one_command() -> None:
    assert [m.COMMAND.name for m in COMMAND_MODULES] == [
        "train",
        "prune",
        "eval",
        "measure",
        "export",
        "check",
        "criteria",
        "sensitivity",
        "sr-stats",
        "demo",
        "bench",
        "report",
    ]
    assert set(COMMANDS) == {m.COMMAND.name for m in COMMAND_MODULES}


def test_every_option_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)  # type: ignore[arg-type]
    for name, child in sub.choices.items():  # type: ignore[union-attr]
        for action in child._actions:
            assert action.help, f"option {action.option_strings} of {name!r} has no help"


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, ["--help"])
    assert code == 0
    for name in COMMANDS:
        assert name in out
    code, out, _ = run_cli(capsys, ["prune", "--help"])
    assert code == 0
    for option in ("--config", "--set", "--resume", "--overwrite", "--name", "--output-dir", "--no-progress"):
        assert option in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["train", "--bogus"],
        ["measure", "--model", "resnet20", "--input-shape", "3,32"],
        ["measure", "--model", "resnet20", "--repeats", "0"],
        ["measure", "--model", "small_cnn", "--device", "gpu0"],
        ["export", "--run", "x", "--output", "y", "--format", "tflite"],
    ],
)
def test_argparse_misuse_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run_cli(capsys, argv)
    assert code == 2
    assert "Traceback" not in out + err
    assert "error" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--set", "train.lrr=0.1"], ["train.lrr: got 0.1; unknown key", "did you mean 'lr'?"]),
        (["train", "--set", "train.epochs=lots"], ["train.epochs: got 'lots'; must be a valid integer"]),
        (["train", "--set", "train.lr=-1"], ["train.lr: got -1; must be greater than 0"]),
        (["train", "--set", "data.name=mnistt"], ["data.name: got 'mnistt'; allowed:", "digits"]),
        (["train", "--set", "model.width=1e6"], ["model.width", "less than or equal to 64"]),
        (["eval", "--weights", "w.safetensors", "--set", "model.name=resnet"], ["model.name: got 'resnet'; allowed:"]),
        (["train", "--set", "train.lr"], ["override 'train.lr': expected KEY=VALUE"]),
        (["train", "--set", "train.device=gpu0"], ["gpu0", "is not a torch device"]),
        (["measure", "--model", "resnet200"], ["--model: got 'resnet200'", "resnet20"]),
        (["measure", "--model", "small_cnn", "--width", "1e6"], ["--width: got 1e+06; at most 64"]),
        (["measure"], ["measure needs --model NAME, --run DIR or --weights FILE"]),
        (["eval"], ["eval needs --weights FILE or --run DIR"]),
        (["export", "--output", "out"], ["exactly one of --run DIR or --weights FILE"]),
        (["prune", "--set", "train.epochs=1"], ["the config has no 'prune' section"]),
        (
            ["prune", "--set", "prune={method: depgraph, target_macs_fraction: 0.5, decay: {policy: sp+rs}}"],
            ["prune.decay.policy", "sp+sr"],
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    expected: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, argv)
    assert code == 2, out + err
    assert "Traceback" not in err + out
    assert err.startswith("error: ")
    for text in expected:
        assert text in err
    assert not (tmp_path / "runs").exists(), "a refused command must not create a run folder"


def test_yaml_errors_empty_file_and_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: 0.1\n", encoding="utf-8")
    code, _, err = run_cli(capsys, ["train", "--config", str(bad)])
    assert code == 2 and "YAML syntax error at line" in err and str(bad) in err
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    code, _, err = run_cli(capsys, ["train", "--config", str(empty)])
    assert code == 2 and "the file is empty" in err
    code, _, err = run_cli(capsys, ["eval", "--config", str(tmp_path / "absent.yaml"), "--weights", "w"])
    assert code == 2 and f"config file '{tmp_path / 'absent.yaml'}' does not exist" in err


def test_output_dir_that_is_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run_cli(capsys, ["train", "--output-dir", str(blocker), "--set", "train.epochs=1"])
    assert code == 2 and "Traceback" not in out + err
    assert f"'{blocker}' is a file, not a folder" in err


def test_python_m_decayprune_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "decayprune", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "train" in proc.stdout and "export" in proc.stdout


@pytest.mark.parametrize("kind", ["truncated-cifar", "pickle-payload", "corrupt-png"])
def test_broken_data_files_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str) -> None:
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    if kind == "corrupt-png":
        for split in ("train", "test"):
            (tmp_path / split / "cat").mkdir(parents=True)
            (tmp_path / split / "cat" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        name = "imagefolder"
    else:
        folder = tmp_path / "cifar-10-batches-py"
        folder.mkdir()
        blob = pickle.dumps({b"data": b"x" * 100})[:20] if kind == "truncated-cifar" else pickle.dumps(Payload())
        for file in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
            (folder / file).write_bytes(blob)
        name = "cifar10"
    argv = ["train", "--set", f"data.name={name}", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o")]
    code, out, err = run_cli(capsys, argv)
    assert code == 2 and "Traceback" not in out + err
    assert err.startswith(f"error: cannot load dataset '{name}'")
    assert not (tmp_path / "o").exists()


def test_threads_option_is_applied_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    import torch

    from decayprune.cli import train
    from decayprune.cli.common import apply_threads

    before = torch.get_num_threads()
    seen: list[int] = []
    monkeypatch.setattr(train, "_run", lambda args: seen.append(torch.get_num_threads()) or 0)
    assert train.run(argparse.Namespace(threads=1)) == 0
    assert seen == [1] and torch.get_num_threads() == before
    with apply_threads(argparse.Namespace(threads=None)):
        assert torch.get_num_threads() == before
