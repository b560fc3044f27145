"""Run configuration: YAML files validated by pydantic, with dotted overrides.

A run config has one section per concern (``data``, ``model``, ``train``) plus the run's
``name`` and ``output_dir``; the run folder is ``<output_dir>/<name>/``. Every problem in a
config is reported at once, each as ``<dotted.key>: got <value>; <what is allowed>``.

Relative paths (``output_dir``, ``data.data_dir``, ``model.weights``) are relative to the
current working directory, not to the config file.

Example:
    >>> cfg = load_config(None, ["train.epochs=2", "data.train_subset=64"])
    >>> cfg.train.epochs, cfg.data.name, cfg.model.name
    (2, 'digits', 'small_cnn')
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from decayprune.data import list_datasets
from decayprune.models import list_models
from decayprune.pruner import PruneSettings
from decayprune.train import TrainSettings

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "config_to_dict",
    "dump_config",
    "load_config",
]

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class ConfigError(ValueError):
    """A configuration could not be read or is invalid.

    Attributes:
        problems: One line per problem, each ``<dotted.key>: got <value>; <what is allowed>``.
    """

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        if len(self.problems) == 1:
            text = f"invalid configuration{where}: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            text = f"invalid configuration{where} ({len(self.problems)} problems):\n{lines}"
        super().__init__(text)


def _did_you_mean(value: object, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(value), list(allowed), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class DataConfig(BaseModel):
    """Which dataset to train and test on."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    name: str = Field("digits", description="Dataset name (see `decayprune.data.list_datasets()`).")
    data_dir: Path | None = Field(
        None,
        description="Folder holding the dataset files; unset means the dataset's default "
        "location (the embedded data for 'digits').",
    )
    seed: int = Field(0, description="Seed for subset sampling and the train/test split, if any.")
    train_subset: int | None = Field(
        None, ge=1, description="Use only this many training images (random, seeded); unset: all."
    )
    test_subset: int | None = Field(
        None, ge=1, description="Use only this many test images (random, seeded); unset: all."
    )

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        allowed = list_datasets()
        if value not in allowed:
            raise ValueError(f"got {value!r}; allowed: {', '.join(allowed)}{_did_you_mean(value, allowed)}")
        return value

    @field_validator("data_dir")
    @classmethod
    def _existing_folder(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        if not value.exists():
            raise ValueError(f"folder '{value}' does not exist; give an existing folder or leave it unset")
        if not value.is_dir():
            raise ValueError(f"'{value}' is a file, not a folder")
        return value


class ModelConfig(BaseModel):
    """Which network to build."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    name: str = Field("small_cnn", description="Model name (see `decayprune.models.list_models()`).")
    width: float = Field(1.0, gt=0, description="Multiplier on every hidden channel count.")
    weights: Path | None = Field(
        None, description="A .safetensors file of weights to start from; unset: random init."
    )

    @field_validator("name")
    @classmethod
    def _known_model(cls, value: str) -> str:
        allowed = list_models()
        if value not in allowed:
            raise ValueError(f"got {value!r}; allowed: {', '.join(allowed)}{_did_you_mean(value, allowed)}")
        return value

    @field_validator("weights")
    @classmethod
    def _existing_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        if not value.exists():
            raise ValueError(f"file '{value}' does not exist; give a .safetensors file or leave it unset")
        if not value.is_file():
            raise ValueError(f"'{value}' is a folder, not a .safetensors file")
        return value


class RunConfig(BaseModel):
    """One run: what to train, on what, how, and where to write it."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    name: str = Field(
        "run",
        description="Run name, used as the run folder name: letters, digits, '.', '_' and '-', "
        "starting with a letter or digit, at most 100 characters.",
    )
    output_dir: Path = Field(Path("runs"), description="Folder that holds run folders.")
    data: DataConfig = Field(default_factory=DataConfig, description="Dataset settings.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Model settings.")
    train: TrainSettings = Field(
        default_factory=TrainSettings,
        description="Training settings (for `prune`: the pruning run, i.e. selection, decay and fine-tuning).",
    )
    pretrain: TrainSettings | None = Field(
        None, description="`prune` only: train the base model first with these settings (skipped if model.weights is set)."
    )
    prune: PruneSettings | None = Field(
        None, description="`prune` only: method, MACs target, schedule and zeroing policy (oneshot, sp, sp+sr)."
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _SAFE_NAME.fullmatch(value):
            raise ValueError(
                f"got {value!r}; use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("output_dir")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def run_dir(self) -> Path:
        """The run folder, ``<output_dir>/<name>``."""
        return self.output_dir / self.name


# ----------------------------------------------------------------------------- reading YAML


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in result:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        result[key] = loader.construct_object(value_node, deep=deep)
    return result


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"YAML syntax error{where}: {problem}"


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError([f"config file '{path}' does not exist"])
    if not path.is_file():
        raise ConfigError([f"config path '{path}' is a folder, not a YAML file"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read config file: {exc}"], source=str(path)) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # safe: _StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc)], source=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        sections = ", ".join(RunConfig.model_fields)
        raise ConfigError(
            [f"top level: got a {type(data).__name__}; expected a mapping of keys ({sections})"],
            source=str(path),
        )
    return data


# ----------------------------------------------------------------------------- overrides


def _set_dotted(tree: dict[str, Any], key: str, value: Any, origin: str) -> None:
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError([f"override {origin!r}: key {key!r} is not a dotted key like 'train.lr'"])
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError([f"override {origin!r}: {prefix} is a value ({child!r}), not a section"])
        node = child
    node[parts[-1]] = value


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep:
        raise ConfigError([f"override {text!r}: expected KEY=VALUE, e.g. train.lr=0.05"])
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError([f"override {text!r}: value is not valid YAML ({_yaml_problem(exc)})"]) from None
    return key.strip(), value


# ----------------------------------------------------------------------------- error messages


def _unwrap(annotation: Any) -> list[Any]:
    """The candidate types inside ``X | None``, ``Optional[X]``, ``list[X]``, ... ."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_unwrap(arg))
        return out
    if origin in (list, tuple, Sequence, set, frozenset):
        return [a for arg in typing.get_args(annotation) if arg is not Ellipsis for a in _unwrap(arg)]
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    return [annotation]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    return [c for c in _unwrap(annotation) if isinstance(c, type) and issubclass(c, BaseModel)]


def _scope_of(annotation: Any) -> list[type[BaseModel]] | Any | None:
    """What the next location part can be under a field of this type.

    A list of sections (the part is a key of one of them), ``_MAPPING`` wrapped around the
    value type (the part is a free mapping key), or None (a scalar: parts are union tags).
    """
    candidates = _unwrap(annotation)
    for candidate in candidates:
        if typing.get_origin(candidate) in (dict, Mapping):
            args = typing.get_args(candidate)
            return _Mapping(args[1] if len(args) == 2 else Any)
    return _models_in(annotation) or None


class _Mapping:
    """Marks a free-form mapping field while walking an error location."""

    def __init__(self, value_annotation: Any) -> None:
        self.value_annotation = value_annotation


def _resolve(
    root: type[BaseModel], loc: Sequence[str | int]
) -> tuple[tuple[str | int, ...], type[BaseModel] | None, Any]:
    """Walk a pydantic error location from ``root``.

    Returns:
        (the location without pydantic's union tags, the model owning the last key or None,
        the annotation of the last key or None when it is not a known field).
    """
    kept: list[str | int] = []
    scope: Any = [root]
    owner: type[BaseModel] | None = root
    annotation: Any = None
    for part in loc:
        if isinstance(scope, _Mapping):  # a key of a free-form mapping
            if part == "[key]":
                continue
            kept.append(part)
            annotation = scope.value_annotation
            scope = _scope_of(annotation)
            continue
        if isinstance(part, int):
            kept.append(part)
            continue
        if scope is None:  # a tag such as 'int' inside a scalar field's union: not a key
            continue
        tagged = [m for m in scope if m.__name__ == part]
        if tagged and len(scope) > 1:  # a tag naming one member of a union of sections
            scope = tagged
            continue
        kept.append(part)
        owner = next((m for m in scope if part in m.model_fields), None)
        if owner is None:
            owner, annotation, scope = scope[0], None, None
            continue
        annotation = owner.model_fields[part].annotation
        scope = _scope_of(annotation)
    return tuple(kept), owner, annotation


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "top level"


def _literals(annotation: Any) -> list[Any]:
    return [
        value
        for candidate in _unwrap(annotation)
        if typing.get_origin(candidate) is Literal
        for value in typing.get_args(candidate)
    ]


def _allowed_text(error: Mapping[str, Any], annotation: Any) -> str:
    literals = _literals(annotation)
    if error["type"] in ("literal_error", "enum") and literals:
        text = "allowed: " + ", ".join(repr(v) for v in literals)
        return text + _did_you_mean(error.get("input"), [str(v) for v in literals])
    msg = str(error.get("msg", ""))
    for prefix, replacement in (("Input should be ", "must be "), ("Input should ", "must ")):
        if msg.startswith(prefix):
            return replacement + msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(error: Mapping[str, Any], root: type[BaseModel]) -> tuple[str, str]:
    """``(<dotted.key>: got <value>, <what is allowed>)`` for one pydantic error."""
    loc, owner, annotation = _resolve(root, tuple(error.get("loc", ())))
    key = _dotted(loc)
    kind = error["type"]
    got = f"{key}: got {_short_repr(error.get('input'))}"
    if kind == "extra_forbidden":
        allowed = list(owner.model_fields) if owner is not None else []
        hint = _did_you_mean(loc[-1] if loc else "", allowed)
        return got, f"unknown key, allowed keys here: {', '.join(allowed)}{hint}"
    if kind == "value_error":  # our validators phrase the value and what is allowed
        return f"{key}: {(error.get('ctx') or {}).get('error', error.get('msg'))}", ""
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        sections = _models_in(annotation) if annotation is not None else [root]
        return got, "must be a mapping" + (
            f" with keys {', '.join(sections[0].model_fields)}" if sections else ""
        )
    if kind == "missing":
        return f"{key}: missing", "this key is required"
    return got, _allowed_text(error, annotation)


def _validation_problems(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per key; the alternatives of a union field are joined into one line."""
    merged: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        head, tail = _describe(err, root)
        tails = merged.setdefault(head, [])
        if tail and tail not in tails:
            tails.append(tail)
    return [f"{head}; {', or '.join(tails)}" if tails else head for head, tails in merged.items()]


# ----------------------------------------------------------------------------- public API


def load_config(
    path: str | Path | None,
    overrides: Sequence[str] = (),
    *,
    values: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Read a YAML run config, apply overrides and validate it.

    Args:
        path: A YAML file, or None for the defaults (digits + small_cnn).
        overrides: ``dotted.key=value`` strings; each value is parsed as YAML, so
            ``train.lr=0.05`` gives a float and ``train.amp=true`` a bool.
        values: Further ``dotted.key -> value`` settings whose values are already typed
            (applied after ``overrides``; the CLI uses this for options like ``--name``).

    Returns:
        The validated :class:`RunConfig`.

    Raises:
        ConfigError: The file is missing or is not valid YAML, the top level is not a mapping,
            or any key is unknown, of the wrong type or out of range (all problems listed).

    Example:
        >>> cfg = load_config(None, ["train.lr=0.05", "model.width=0.5"])
        >>> cfg.train.lr, cfg.model.width
        (0.05, 0.5)
    """
    source = str(path) if path is not None else None
    if source is not None and (overrides or values):
        source += " + overrides"
    tree: dict[str, Any] = _read_yaml(Path(path)) if path is not None else {}
    for text in overrides:
        key, value = _parse_override(text)
        _set_dotted(tree, key, value, text)
    for key, value in (values or {}).items():
        _set_dotted(tree, key, value, f"{key}={value}")
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_validation_problems(exc, RunConfig), source=source) from None


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    """A plain (YAML/JSON-safe) dict of a config: paths as strings, tuples as lists.

    Example:
        >>> config_to_dict(RunConfig())["model"]["name"]
        'small_cnn'
    """
    return cfg.model_dump(mode="json")


def dump_config(cfg: BaseModel, path: str | Path) -> Path:
    """Write a resolved config as YAML, atomically; :func:`load_config` reads it back equal.

    Args:
        cfg: The config (usually a :class:`RunConfig`).
        path: Target file, e.g. ``run_dir / "config.yaml"``; parent folders are created.

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib
        >>> out = dump_config(RunConfig(name="doc"), pathlib.Path(tempfile.mkdtemp()) / "c.yaml")
        >>> load_config(out).name
        'doc'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
