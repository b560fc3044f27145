"""The per-epoch metrics file ``metrics.jsonl``: one JSON object per line."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from decayprune.files import write_text_atomic

__all__ = ["json_safe", "read_jsonl", "write_jsonl"]


def json_safe(value: Any) -> Any:
    """Replace non-finite floats (NaN, inf) by None, recursively, so strict JSON readers cope.

    Example:
        >>> json_safe({"loss": float("nan"), "top1": [1.5]})
        {'loss': None, 'top1': [1.5]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines file; a missing file gives an empty list, blank lines are skipped.

    Example:
        >>> read_jsonl("/nonexistent/metrics.jsonl")
        []
    """
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number} is not valid JSON: {err}") from err
    return records


def write_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    """Rewrite ``path`` atomically with one JSON object per line.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.jsonl"
        >>> write_jsonl(p, [{"epoch": 0}, {"epoch": 1}]); read_jsonl(p)
        [{'epoch': 0}, {'epoch': 1}]
    """
    text = "".join(json.dumps(json_safe(r), allow_nan=False) + "\n" for r in records)
    write_text_atomic(path, text)
