"""Safe run folders: a fresh run never lands on another run's files, a resume never changes the result.

Rules (shared by ``train`` and ``prune``):

* a fresh run needs an empty (or absent) folder; ``overwrite=True`` clears it first;
* ``resume=True`` needs a run to resume (its ``config.yaml``), and the given config may differ
  from the saved one only in keys that do not change the result (:data:`RESULT_FREE_KEYS`);
* a path in the way that is a file, not a folder, is reported as such.

Example:
    >>> import tempfile
    >>> from decayprune.config import load_config
    >>> cfg = load_config(None, values={"output_dir": tempfile.mkdtemp(), "name": "doc"})
    >>> prepare_run_dir(cfg).name
    'doc'
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from ..config import RunConfig, config_to_dict, dump_config, load_config
from ..errors import ConfigError, RunFolderError

__all__ = ["RESULT_FREE_KEYS", "changed_keys", "config_hash", "prepare_run_dir"]

CONFIG_FILE = "config.yaml"

#: Leaf keys that may change between an interrupted run and its resume without changing the result.
RESULT_FREE_KEYS = frozenset(
    {"name", "output_dir", "data_dir", "device", "eval_every", "checkpoint_every", "log_every"}
)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def changed_keys(saved: RunConfig, given: RunConfig) -> list[str]:
    """Dotted keys whose values differ between two configs and change a run's result.

    Example:
        >>> from decayprune.config import load_config
        >>> changed_keys(load_config(None), load_config(None, ["train.lr=0.5", "train.device=cpu"]))
        ['train.lr']
    """
    old, new = _flatten(config_to_dict(saved)), _flatten(config_to_dict(given))
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return [k for k in keys if k.rsplit(".", 1)[-1] not in RESULT_FREE_KEYS]


def config_hash(cfg: RunConfig, sections: Iterable[str]) -> str:
    """A short hash of the result-changing settings of ``sections`` (e.g. what the base model depends on).

    Example:
        >>> from decayprune.config import load_config
        >>> a = config_hash(load_config(None), ["model", "data"])
        >>> a == config_hash(load_config(None, ["train.lr=0.5"]), ["model", "data"])
        True
    """
    tree = config_to_dict(cfg)
    picked = {s: tree.get(s) for s in sections}
    flat = {k: v for k, v in _flatten(picked).items() if k.rsplit(".", 1)[-1] not in RESULT_FREE_KEYS}
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_not_a_file(path: Path, what: str) -> None:
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise RunFolderError(f"{what} '{path}': '{parent}' is a file, not a folder; choose another path")
            return


def _saved_config(run_dir: Path) -> RunConfig:
    try:
        return load_config(run_dir / CONFIG_FILE)
    except ConfigError as exc:
        raise RunFolderError(f"cannot resume '{run_dir}': its {CONFIG_FILE} is not readable ({exc})") from None


def prepare_run_dir(cfg: RunConfig, *, resume: bool | Literal["auto"] = False, overwrite: bool = False) -> Path:
    """Make ``cfg.run_dir`` ready for a fresh run or a resume, and write the resolved config into it.

    Args:
        cfg: The run config.
        resume: True: continue the run in the folder (it must exist with the same result-changing
            settings); ``"auto"``: resume when the folder holds a run of this config, start fresh
            in an empty folder; False: start fresh.
        overwrite: For a fresh run, clear a non-empty folder first.

    Returns:
        The run folder.

    Raises:
        RunFolderError: The folder holds another run, there is nothing to resume, the saved config
            differs in keys that change the result (named), or a file is in the way.
    """
    run_dir = cfg.run_dir
    _check_not_a_file(run_dir, "run folder")
    busy = run_dir.is_dir() and any(run_dir.iterdir())
    has_config = (run_dir / CONFIG_FILE).is_file()
    if resume == "auto":
        resume = has_config
    if resume:
        if overwrite:
            raise RunFolderError("--resume and --overwrite contradict each other; choose one")
        if not has_config:
            raise RunFolderError(
                f"nothing to resume in '{run_dir}' (no {CONFIG_FILE}); run without --resume to start it"
            )
        changed = changed_keys(_saved_config(run_dir), cfg)
        if changed:
            raise RunFolderError(
                f"cannot resume '{run_dir}' with a different config: {', '.join(changed)} changed "
                "(that would change the result); start a new run with another --name, or --overwrite this one"
            )
        return run_dir
    if busy:
        if not overwrite:
            names = sorted(p.name for p in run_dir.iterdir())
            shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            raise RunFolderError(
                f"run folder '{run_dir}' already holds files ({shown}); use --resume to continue it, "
                "--name to start another run, or --overwrite to replace it"
            )
        for child in run_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / CONFIG_FILE)
    return run_dir
