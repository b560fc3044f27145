"""Atomic file writes: write a temp file in the target folder, fsync, then ``os.replace``.

The one place the package writes files that must never be seen half-written (configs,
checkpoints, results, weights, pruned-model specs). New files get the usual permissions
(``0o666`` less the umask), not the ``0o600`` of a temp file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

__all__ = ["append_jsonl", "save_safetensors_atomic", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _temp_path(path: Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success move it over ``path``, else delete it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    mode = 0o666 & ~_umask()
    try:
        yield tmp
        os.chmod(tmp, mode)  # after writing: some writers (safetensors) replace the temp file
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (readers see the old or the new file, never half).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
        >>> write_bytes_atomic(p, b"ok"); p.read_bytes()
        b'ok'
    """
    with _temp_path(Path(path)) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> write_text_atomic(p, "hi"); p.read_text()
        'hi'
    """
    write_bytes_atomic(path, text.encode("utf-8"))


def append_jsonl(path: str | os.PathLike[str], record: Any) -> None:
    """Append ``record`` as one JSON line to ``path`` (folders created; a log, so not atomic).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "logs" / "a.jsonl"
        >>> append_jsonl(p, {"step": 1}); append_jsonl(p, {"step": 2}); p.read_text().splitlines()
        ['{"step": 1}', '{"step": 2}']
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON (no NaN/Infinity) to ``path`` atomically.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.json"
        >>> write_json_atomic(p, {"epoch": 3}); json.loads(p.read_text())
        {'epoch': 3}
    """
    write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def save_safetensors_atomic(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Save tensors to a ``.safetensors`` file atomically.

    Tensors are detached, moved to the CPU and cloned contiguous first, so views and
    tensors sharing storage (tied weights) are accepted.

    Example:
        >>> import tempfile, pathlib
        >>> from safetensors.torch import load_file
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.safetensors"
        >>> save_safetensors_atomic(p, {"w": torch.ones(2, 3).t()})
        >>> load_file(p)["w"].shape
        torch.Size([3, 2])
    """
    prepared: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"tensor {key!r} is a {type(value).__name__}, not a torch.Tensor")
        prepared[key] = value.detach().to("cpu", copy=True).contiguous()
    with _temp_path(Path(path)) as tmp:
        save_file(prepared, str(tmp), metadata=dict(metadata) if metadata else None)
