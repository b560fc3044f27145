"""The bench file: validation with clear errors, the matrix and cell names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from bench_testing import write_bench

from decayprune.bench import BenchSpec, Cell, cell_config, expand, load_bench
from decayprune.errors import ConfigError


def test_matrix_is_the_full_product_with_stable_names(tmp_path):
    spec = load_bench(write_bench(tmp_path))
    cells = expand(spec)
    assert len(cells) == 8 and len({c.name for c in cells}) == 8
    assert cells[0] == Cell("small_cnn", "synthetic", "depgraph", "oneshot", 0)
    assert cells[1].name == "small_cnn-synthetic-depgraph-sp-sr-s0"
    cfg = cell_config(spec, cells[1])
    assert (cfg.prune.method, cfg.prune.decay.policy, cfg.finetune.seed, cfg.pretrain.seed) == (
        "depgraph",
        "sp+sr",
        0,
        0,
    )
    assert cfg.run_dir == tmp_path / "runs" / "tiny" / cells[1].name
    assert cfg.prune.target_macs_fraction == 0.5 and cfg.data.train_subset == 96


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        ({"matrix": {"method": ["nope"]}}, ["matrix.method", "nope", "depgraph"]),
        ({"matrix": {"policy": ["sr"]}}, ["matrix.policy", "oneshot, sp, sp+sr"]),
        ({"matrix": {"seed": [1, 1]}}, ["matrix.seed", "more than once"]),
        ({"matrix": {"seed": []}}, ["matrix.seed", "at least one"]),
        ({"name": "a b"}, ["name", "letters, digits"]),
        ({"surprise": 1}, ["surprise"]),
        ({"base": {"name": "x"}}, ["base", "set by the bench"]),
        ({"base": {"prune": {"target_macs_fraction": 3}}}, ["base.prune.target_macs_fraction", "less than 1"]),
        ({"base": {}}, ["base.prune"]),
    ],
)
def test_bad_bench_files_name_the_key_and_what_is_allowed(tmp_path, changes, needles):
    path = write_bench(tmp_path, **changes)
    with pytest.raises(ConfigError) as err:
        load_bench(path)
    for needle in needles:
        assert needle in str(err.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_bench(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping"):
        load_bench(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="YAML"):
        load_bench(tmp_path / "bad.yaml")


def test_output_dir_override(tmp_path):
    spec = load_bench(write_bench(tmp_path), {"output_dir": str(tmp_path / "elsewhere")})
    assert spec.bench_dir == tmp_path / "elsewhere" / "tiny"
    assert isinstance(spec, BenchSpec)


def test_per_method_settings_apply_to_that_methods_cells_only(tmp_path):
    per_method = {"l1": {"finetune": {"lr": 0.123}, "prune": {"iterative_steps": 1}}}
    spec = load_bench(write_bench(tmp_path, per_method=per_method))
    for cell in expand(spec):
        cfg = cell_config(spec, cell)
        assert (cfg.finetune.lr == 0.123) == (cell.method == "l1")
        assert cfg.prune.iterative_steps == (1 if cell.method == "l1" else 2)
        assert cfg.prune.target_macs_fraction == 0.5
    with pytest.raises(ConfigError, match="per_method"):
        load_bench(write_bench(tmp_path, per_method={"nope": {}}))
    with pytest.raises(ConfigError, match="base.finetune.lr"):
        load_bench(write_bench(tmp_path, per_method={"l1": {"finetune": {"lr": -1}}}))


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("*.yaml")), ids=lambda p: p.name
)
def test_shipped_bench_files_are_valid(path):
    spec = load_bench(path)
    assert len(expand(spec)) >= 3 and spec.name == path.stem
