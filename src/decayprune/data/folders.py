"""Where dataset files are looked for, and the error raised when they are not found."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = ["ENV_VAR", "data_roots", "candidate_dirs", "locate"]

ENV_VAR = "DECAYPRUNE_DATA"

# A check returns None when a folder holds the dataset, else a short reason ("missing x, y").
FolderCheck = Callable[[Path], "str | None"]


def data_roots(data_dir: str | os.PathLike | None) -> list[Path]:
    """The user-given roots, in search order: ``data_dir``, then each entry of ``$DECAYPRUNE_DATA``.

    ``$DECAYPRUNE_DATA`` may hold several folders separated by ``os.pathsep``.

    Example:
        >>> data_roots("/tmp/x")[0]
        PosixPath('/tmp/x')
    """
    roots: list[Path] = []
    if data_dir is not None:
        roots.append(Path(data_dir).expanduser())
    env = os.environ.get(ENV_VAR, "")
    roots.extend(Path(part).expanduser() for part in env.split(os.pathsep) if part.strip())
    return roots


def candidate_dirs(
    data_dir: str | os.PathLike | None,
    subfolders: Sequence[str] = (),
    defaults: Iterable[str | os.PathLike] = (),
) -> list[Path]:
    """Every folder to try: each root, then each root joined with each subfolder, then ``defaults``.

    Duplicates are dropped, the first occurrence keeping its place.

    Example:
        >>> _ = os.environ.pop(ENV_VAR, None)
        >>> [str(p) for p in candidate_dirs("/d", ["mnist"], ["/usr/share/x"])]
        ['/d', '/d/mnist', '/usr/share/x']
    """
    found: list[Path] = []
    for root in data_roots(data_dir):
        found.append(root)
        found.extend(root / sub for sub in subfolders)
    found.extend(Path(d) for d in defaults)
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def locate(title: str, candidates: Sequence[Path], check: FolderCheck, expected: str, how_to_get: str) -> Path:
    """Return the first candidate folder that ``check`` accepts.

    Raises:
        FileNotFoundError: naming every folder searched (and why each failed), the expected files
            and how to obtain them.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> locate("toy", [d], lambda p: None, "anything", "n/a") == d
        True
    """
    reasons: list[str] = []
    for folder in candidates:
        if not folder.is_dir():
            reasons.append(f"  {folder}  (no such folder)")
            continue
        problem = check(folder)
        if problem is None:
            return folder
        reasons.append(f"  {folder}  ({problem})")
    searched = "\n".join(reasons) if reasons else f"  (none: no data_dir was given and ${ENV_VAR} is not set)"
    raise FileNotFoundError(
        f"{title} not found. Folders searched:\n{searched}\nExpected: {expected}\nHow to get it: {how_to_get}"
    )
