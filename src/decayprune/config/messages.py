"""Turn pydantic validation errors into one line per key: ``<dotted.key>: got <value>; <allowed>``."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union

from pydantic import BaseModel, ValidationError

from ..registry import did_you_mean

__all__ = ["validation_problems"]


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
        return text + did_you_mean(error.get("input"), [str(v) for v in literals])
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
        hint = did_you_mean(loc[-1] if loc else "", allowed)
        return got, f"unknown key, allowed keys here: {', '.join(allowed)}{hint}"
    if kind == "value_error":  # our validators phrase the value and what is allowed
        return f"{key}: {(error.get('ctx') or {}).get('error', error.get('msg'))}", ""
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        sections = _models_in(annotation) if annotation is not None else [root]
        return got, "must be a mapping" + (f" with keys {', '.join(sections[0].model_fields)}" if sections else "")
    if kind == "missing":
        return f"{key}: missing", "this key is required"
    return got, _allowed_text(error, annotation)


def validation_problems(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per key; the alternatives of a union field are joined into one line."""
    merged: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        head, tail = _describe(err, root)
        tails = merged.setdefault(head, [])
        if tail and tail not in tails:
            tails.append(tail)
    return [f"{head}; {', or '.join(tails)}" if tails else head for head, tails in merged.items()]
