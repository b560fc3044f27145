"""Every configs/paper/ file (one per DPM table row) validates as shipped, fits its CIFAR-10 run, and
runs end to end (validation, a selection, compaction) for a few steps on tiny CIFAR-shaped files in
the official python-pickle format."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from decayprune.cli import main
from decayprune.config import load_config
from decayprune.jobs import check_schedule

PAPER = Path(__file__).resolve().parents[2] / "configs" / "paper"
CIFAR10_TRAIN = 50_000

SHORT = [
    "finetune.epochs=2",
    "finetune.batch_size=8",
    "prune.decay.steps=2",
    "pretrain.epochs=1",
    "pretrain.batch_size=8",
    "pretrain.milestones=[]",
]
STEP = "finetune.milestones=[1]"
#: Per config: the overrides that shrink its schedule to ten steps (everything else as shipped).
OVERRIDES = {
    "depgraph_resnet56_sl": [
        *SHORT,
        STEP,
        "sparse_learning.epochs=1",
        "sparse_learning.batch_size=8",
        "sparse_learning.milestones=[]",
        "prune.method_options.progressive_steps=4",
    ],
    "depgraph_resnet56": [*SHORT, STEP, "prune.method_options.progressive_steps=4"],
    "otov2_vgg16bn": [*SHORT[:3], STEP, "prune.start_epoch=0", "prune.end_epoch=1"],
    "gate_decorator_vgg16": [
        *SHORT,
        "prune.end_epoch=1",
        "prune.recovery_fraction=0.1",
        "prune.method_options.tick_steps=2",
        "prune.method_options.tock_every=1",
        "prune.method_options.tock_steps=1",
        "prune.method_options.initial_tock_steps=1",
    ],
}


def _write_cifar10(root: Path, per_batch: int = 8) -> Path:
    """The official layout: data_batch_1..5, test_batch, batches.meta (pickled dicts of bytes keys)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def dump(name: str, obj: object) -> None:
        with open(folder / name, "wb") as handle:
            pickle.dump(obj, handle, protocol=2)

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        dump(
            name,
            {
                b"batch_label": name.encode(),
                b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
            },
        )
    labels = [n.encode() for n in "airplane automobile bird cat deer dog frog horse ship truck".split()]
    dump("batches.meta", {b"label_names": labels, b"num_vis": 3072, b"num_cases_per_batch": per_batch})
    return root


def test_there_is_one_config_per_table_row() -> None:
    assert sorted(p.stem for p in PAPER.glob("*.yaml")) == sorted(OVERRIDES)


@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_the_shipped_config_validates_and_fits_its_cifar10_run(name: str) -> None:
    cfg = load_config(PAPER / f"{name}.yaml")
    assert cfg.prune is not None and cfg.data.name == "cifar10"
    steps_per_epoch = math.ceil(CIFAR10_TRAIN / cfg.finetune.batch_size)
    schedule = check_schedule(cfg.prune, epochs=cfg.finetune.epochs, steps_per_epoch=steps_per_epoch)
    assert schedule.steps[0] >= 1
    if cfg.prune.decay.self_rectifying and cfg.prune.decay.sr_criterion == "radial":
        assert -1 <= cfg.prune.decay.t_rate < 1


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_the_config_runs_a_selection_and_compaction_on_tiny_cifar_files(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _write_cifar10(tmp_path / "data")
    argv = ["prune", "--config", str(PAPER / f"{name}.yaml"), "--data-dir", str(data)]
    argv += ["--output-dir", str(tmp_path / "runs"), "--no-progress", "--no-report", "--threads", "1"]
    argv += [item for value in OVERRIDES[name] for item in ("--set", value)]
    argv += ["--set", "finetune.device=cpu"]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    cfg = load_config(PAPER / f"{name}.yaml")
    record = json.loads((tmp_path / "runs" / cfg.name / "result.json").read_text())
    assert record["status"] == "ok" and record["pruned_structures"] > 0
    assert record["final"]["macs"] < record["base"]["macs"]
    assert record["final"]["top1"] == pytest.approx(record["masked_top1"], abs=1e-9)  # exact compaction
    if cfg.sparse_learning is not None:
        assert record["epochs"]["sparse_learning"] == 1
