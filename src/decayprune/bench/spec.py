"""The bench file: a base run config and the matrix axes (model x dataset x method x policy x seed).

A bench YAML file looks like this (every key of ``base`` is a run-config key, see ``configs/``)::

    name: cpu-quick            # cells go to <output_dir>/<name>/<cell>/
    output_dir: runs
    base:                      # the run config every cell starts from
      pretrain: {epochs: 12, batch_size: 64}
      finetune: {epochs: 6, batch_size: 64}
      prune: {target_macs_fraction: 0.2, iterative_steps: 3}
    per_method:                # settings merged over base for one method's cells
      otov2: {prune: {method_options: {lmbda: 3.0}}}
    matrix:
      model: [small_cnn]
      dataset: [digits]
      method: [depgraph, l1]
      policy: [oneshot, sp, sp+sr]
      seed: [0, 1, 2]

Each cell is an ordinary prune run named ``<model>-<dataset>-<method>-<policy>-s<seed>`` (``+`` is
written ``-``). Cells of one model, dataset and seed prune the same base model: the first of them
pretrains it and the others start from its ``base.safetensors`` (``share_base: false`` turns that off).

Example:
    >>> matrix = {"method": ["l1"], "policy": ["oneshot", "sp"]}
    >>> spec = BenchSpec.model_validate({"name": "demo", "base": {"prune": {"speed_up": 2}}, "matrix": matrix})
    >>> [cell.name for cell in expand(spec)]
    ['small_cnn-digits-l1-oneshot-s0', 'small_cnn-digits-l1-sp-s0']
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config import RunConfig, load_config
from ..config.messages import validation_problems
from ..errors import ConfigError
from ..registry import DATASETS, METHODS, MODELS

__all__ = ["BenchSpec", "Cell", "MatrixAxes", "cell_config", "expand", "load_bench"]

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,59}")
POLICIES = ("oneshot", "sp", "sp+sr")
#: Keys of ``base`` that the bench sets itself (per cell).
_BENCH_OWNED = ("name", "output_dir")


def _unique(values: list[Any], axis: str) -> list[Any]:
    if not values:
        raise ValueError(f"no {axis} given; give at least one value")
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} given more than once; give each {axis} once")
    return values


class MatrixAxes(BaseModel):
    """The axes of the matrix; every combination is one cell."""

    model_config = ConfigDict(extra="forbid")

    model: list[str] = Field(default_factory=lambda: ["small_cnn"], description="Model names.")
    dataset: list[str] = Field(default_factory=lambda: ["digits"], description="Dataset names.")
    method: list[str] = Field(default_factory=lambda: ["depgraph"], description="Pruning methods.")
    policy: list[str] = Field(default_factory=lambda: list(POLICIES), description="Zeroing policies.")
    seed: list[int] = Field(default_factory=lambda: [0], description="Seeds (pretrain and finetune).")

    @field_validator("model")
    @classmethod
    def _models(cls, values: list[str]) -> list[str]:
        for value in values:
            if value not in MODELS:
                raise ValueError(MODELS.allowed_message(value))
        return _unique(values, "model")

    @field_validator("dataset")
    @classmethod
    def _datasets(cls, values: list[str]) -> list[str]:
        for value in values:
            if value not in DATASETS:
                raise ValueError(DATASETS.allowed_message(value))
        return _unique([DATASETS.key(v) for v in values], "dataset")

    @field_validator("method")
    @classmethod
    def _methods(cls, values: list[str]) -> list[str]:
        for value in values:
            if value not in METHODS:
                raise ValueError(METHODS.allowed_message(value))
        return _unique(values, "method")

    @field_validator("policy")
    @classmethod
    def _policies(cls, values: list[str]) -> list[str]:
        for value in values:
            if value not in POLICIES:
                raise ValueError(f"unknown policy '{value}'; allowed: {', '.join(POLICIES)}")
        return _unique(values, "policy")

    @field_validator("seed")
    @classmethod
    def _seeds(cls, values: list[int]) -> list[int]:
        if any(v < 0 for v in values):
            raise ValueError("seeds must be 0 or more")
        return _unique(values, "seed")


class BenchSpec(BaseModel):
    """A bench: its name, where cells go, the base run config and the matrix."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Bench name: the folder <output_dir>/<name> holds its cells.")
    output_dir: Path = Field(Path("runs"), description="Folder that holds bench folders.")
    base: dict[str, Any] = Field(default_factory=dict, description="Run config every cell starts from.")
    matrix: MatrixAxes = Field(default_factory=MatrixAxes, description="The matrix axes.")
    per_method: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Run-config settings merged over 'base' for the cells of one method, e.g. "
        "{otov2: {prune: {method_options: {lmbda: 3.0}}}}.",
    )
    share_base: bool = Field(True, description="Cells of one model, dataset and seed prune one base model.")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _SAFE_NAME.fullmatch(value):
            raise ValueError(
                f"got '{value}'; use letters, digits, '.', '_' and '-', starting with a letter or digit, "
                "at most 60 characters"
            )
        return value

    @field_validator("base")
    @classmethod
    def _no_owned_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        owned = [k for k in _BENCH_OWNED if k in value]
        if owned:
            raise ValueError(f"{', '.join(owned)} is set by the bench per cell; remove it from 'base'")
        return value

    @field_validator("per_method")
    @classmethod
    def _per_method_keys(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for method, tree in value.items():
            if method not in METHODS:
                raise ValueError(METHODS.allowed_message(method))
            owned = [k for k in _BENCH_OWNED if k in tree]
            if owned:
                raise ValueError(f"{method}: {', '.join(owned)} is set by the bench per cell; remove it")
        return value

    @property
    def bench_dir(self) -> Path:
        """The folder that holds the cells and the bench report."""
        return self.output_dir / self.name


@dataclass(frozen=True)
class Cell:
    """One point of the matrix.

    Example:
        >>> Cell("small_cnn", "digits", "l1", "sp+sr", 2).name
        'small_cnn-digits-l1-sp-sr-s2'
    """

    model: str
    dataset: str
    method: str
    policy: str
    seed: int

    @property
    def name(self) -> str:
        """The cell's run-folder name."""
        return f"{self.model}-{self.dataset}-{self.method}-{self.policy.replace('+', '-')}-s{self.seed}"

    @property
    def base_group(self) -> tuple[str, str, int]:
        """Cells with the same group can prune one base model."""
        return (self.model, self.dataset, self.seed)


def expand(spec: BenchSpec) -> list[Cell]:
    """All cells of the matrix, seed-major (all cells of seed 0 first), then model, dataset, method, policy."""
    m = spec.matrix
    return [
        Cell(model, dataset, method, policy, seed)
        for seed, model, dataset, method, policy in itertools.product(m.seed, m.model, m.dataset, m.method, m.policy)
    ]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def cell_config(spec: BenchSpec, cell: Cell, *, base_weights: Path | None = None) -> RunConfig:
    """The run config of one cell (``base_weights``: start from this base model instead of pretraining).

    Raises:
        ConfigError: The bench's ``base`` is not a valid prune config for this cell (keys named).
    """
    tree = _merge(
        _merge(spec.base, spec.per_method.get(cell.method, {})),
        {
            "name": cell.name,
            "output_dir": str(spec.bench_dir),
            "data": {"name": cell.dataset},
            "model": {"name": cell.model},
            "finetune": {"seed": cell.seed},
            "prune": {"method": cell.method, "decay": {"policy": cell.policy}},
        },
    )
    if isinstance(tree.get("pretrain"), dict):
        tree["pretrain"] = _merge(tree["pretrain"], {"seed": cell.seed})
    if base_weights is not None:
        tree["model"] = dict(tree["model"], weights=str(base_weights))
    try:
        cfg = load_config(None, values=tree)
    except ConfigError as exc:
        raise ConfigError([f"base.{p}" for p in exc.problems], source=f"bench cell {cell.name}") from None
    if cfg.prune is None:
        raise ConfigError(["base.prune: missing; give e.g. prune: {target_macs_fraction: 0.5}"], source=cell.name)
    return cfg


def load_bench(path: str | Path, overrides: dict[str, Any] | None = None) -> BenchSpec:
    """Read and validate a bench YAML file (``overrides``: top-level keys to replace, e.g. ``output_dir``).

    Raises:
        ConfigError: The file is missing, not YAML, or any key is unknown or invalid (all listed).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "b.yaml"
        >>> _ = p.write_text("name: b\\nbase: {prune: {speed_up: 2}}\\nmatrix: {seed: [0, 1]}\\n")
        >>> len(expand(load_bench(p)))
        6
    """
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError([f"bench file '{path}' does not exist"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source=str(path)) from None
    if not isinstance(tree, dict):
        raise ConfigError(["the top level must be a mapping with keys name, base, matrix"], source=str(path))
    tree.update(overrides or {})
    try:
        spec = BenchSpec.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, BenchSpec), source=str(path)) from None
    for cell in expand(spec):  # every cell must be a valid prune run (e.g. a method that needs other keys)
        try:
            cell_config(spec, cell)
        except ConfigError as exc:
            raise ConfigError(exc.problems, source=f"{path}, cell {cell.name}") from None
    return spec
