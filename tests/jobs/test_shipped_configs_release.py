"""Every shipped prune config that runs self-rectifying releases at least once on its own task.

configs/prune_digits.yaml runs here as shipped (embedded digits data, about 15 s). The
configs/paper/ files need CIFAR-10 and a GPU for their own task; here they are only checked to
validate, with thresholds inside the criterion's range (tests/jobs/test_paper_configs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decayprune.cli import main
from decayprune.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _self_rectifying_configs_on_embedded_data() -> list[Path]:
    out = []
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = load_config(path)
        if cfg.prune is not None and cfg.prune.decay.self_rectifying and cfg.data.name == "digits":
            out.append(path)
    return out


def test_the_example_config_is_among_them() -> None:
    assert CONFIGS / "prune_digits.yaml" in _self_rectifying_configs_on_embedded_data()


@pytest.mark.slow
@pytest.mark.parametrize("path", _self_rectifying_configs_on_embedded_data(), ids=lambda p: p.name)
def test_shipped_sp_sr_config_releases_on_its_own_task(path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    code = main(["prune", "--config", str(path), "--output-dir", str(out), "--no-progress", "--no-report"])
    capsys.readouterr()
    assert code == 0
    record = json.loads((out / load_config(path).name / "result.json").read_text())
    assert record["releases"] >= 1, record["releases"]
