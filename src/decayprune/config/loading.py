"""Read and write run configs: YAML files (duplicate keys refused), dotted overrides, atomic dumps.

Relative paths (``output_dir``, ``data.data_dir``, ``model.weights``) are relative to the
current working directory, not to the config file.

Example:
    >>> cfg = load_config(None, ["train.epochs=2", "data.train_subset=64"])
    >>> cfg.train.epochs, cfg.data.name, cfg.model.name
    (2, 'digits', 'small_cnn')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from ..files import write_text_atomic
from .messages import validation_problems
from .run import RunConfig

__all__ = ["config_to_dict", "dump_config", "load_config"]


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in result:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark)
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
    if data is None or data == {}:
        sections = ", ".join(RunConfig.model_fields)
        raise ConfigError(
            [f"the file is empty; give at least one section ({sections}), or leave out --config for the defaults"],
            source=str(path),
        )
    if not isinstance(data, dict):
        sections = ", ".join(RunConfig.model_fields)
        raise ConfigError(
            [f"top level: got a {type(data).__name__}; expected a mapping of keys ({sections})"],
            source=str(path),
        )
    return data


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
        raise ConfigError(validation_problems(exc, RunConfig), source=source) from None


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    """A plain (YAML/JSON-safe) dict of a config: paths as strings, tuples as lists.

    A run config keeps only the sections its kind of run reads (``train`` for a train run;
    ``pretrain``, ``sparse_learning``, ``prune`` and ``finetune`` for a prune run).

    Example:
        >>> config_to_dict(RunConfig())["model"]["name"]
        'small_cnn'
    """
    if isinstance(cfg, RunConfig):
        unused = {"train"} if cfg.is_prune else {"pretrain", "sparse_learning", "prune", "finetune"}
        return cfg.model_dump(mode="json", exclude=unused)
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
    write_text_atomic(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False))
    return path
