"""Safe run folders: fresh runs refuse other runs' files, resumes refuse result-changing edits."""

from __future__ import annotations

from pathlib import Path

import pytest

from decayprune.config import load_config
from decayprune.errors import RunFolderError
from decayprune.jobs import changed_keys, config_hash, prepare_run_dir


def _cfg(tmp_path: Path, *overrides: str):
    return load_config(None, list(overrides), values={"output_dir": str(tmp_path), "name": "r"})


def test_fresh_run_writes_config_and_refuses_a_busy_folder(tmp_path: Path) -> None:
    run = prepare_run_dir(_cfg(tmp_path))
    assert (run / "config.yaml").is_file()
    with pytest.raises(RunFolderError, match=r"already holds files \(config.yaml\); use --resume"):
        prepare_run_dir(_cfg(tmp_path))
    (run / "sub").mkdir()
    (run / "sub" / "x").write_text("x")
    prepare_run_dir(_cfg(tmp_path, "train.lr=0.5"), overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]
    assert load_config(run / "config.yaml").train.lr == 0.5


def test_resume_checks_the_saved_config(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="nothing to resume"):
        prepare_run_dir(_cfg(tmp_path), resume=True)
    prepare_run_dir(_cfg(tmp_path))
    assert prepare_run_dir(_cfg(tmp_path, "train.device=cpu", "train.log_every=7"), resume=True) == tmp_path / "r"
    with pytest.raises(RunFolderError, match=r"train.epochs, train.lr changed"):
        prepare_run_dir(_cfg(tmp_path, "train.lr=0.5", "train.epochs=9"), resume=True)
    with pytest.raises(RunFolderError, match="contradict"):
        prepare_run_dir(_cfg(tmp_path), resume=True, overwrite=True)


def test_auto_resume(tmp_path: Path) -> None:
    run = prepare_run_dir(_cfg(tmp_path), resume="auto")  # empty: fresh
    assert prepare_run_dir(_cfg(tmp_path), resume="auto") == run  # a run of the same config: resumed
    with pytest.raises(RunFolderError, match="train.lr changed"):
        prepare_run_dir(_cfg(tmp_path, "train.lr=0.3"), resume="auto")


def test_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    cfg = load_config(None, values={"output_dir": str(tmp_path / "blocker"), "name": "r"})
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        prepare_run_dir(cfg)


def test_changed_keys_and_hash_ignore_result_free_keys(tmp_path: Path) -> None:
    a, b = _cfg(tmp_path), _cfg(tmp_path / "other", "train.device=cpu", "train.eval_every=3")
    assert changed_keys(a, b) == []
    assert config_hash(a, ["model", "data", "train"]) == config_hash(b, ["model", "data", "train"])
    c = _cfg(tmp_path, "model.width=0.5")
    assert changed_keys(a, c) == ["model.width"]
    assert config_hash(a, ["model"]) != config_hash(c, ["model"])
    assert config_hash(a, ["data"]) == config_hash(c, ["data"])
