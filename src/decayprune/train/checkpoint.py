"""Pickle-free checkpoints: safetensors for tensors, JSON for everything else.

A checkpoint folder holds ``model.safetensors`` (the model's state dict),
``state.safetensors`` (optimizer, hook and RNG tensors) and ``state.json`` (epoch,
step, settings, optimizer param groups, scheduler/scaler state, hook JSON state and
the skeleton that says where each tensor of ``state.safetensors`` belongs).
Loading uses ``safetensors`` and ``json`` only; nothing is ever unpickled.

The folder is replaced as a whole: a new checkpoint is written into a temp sibling
folder, then swapped in with two renames; the previous one is kept as
``.<name>.old`` during the swap and is recovered if the swap was interrupted.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file

from decayprune.files import save_safetensors_atomic, write_json_atomic
from decayprune.train.distributed import unwrap_model
from decayprune.train.seed import get_rng_state, set_rng_state

if TYPE_CHECKING:
    from decayprune.train.trainer import Trainer

__all__ = [
    "CHECKPOINT_FORMAT",
    "flatten_state",
    "load_checkpoint",
    "read_checkpoint_meta",
    "save_checkpoint",
    "save_safetensors_atomic",
    "unflatten_state",
    "write_json_atomic",
]

CHECKPOINT_FORMAT = "decayprune-checkpoint/1"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
META_FILE = "state.json"

_TENSOR, _NDARRAY, _TUPLE, _FLOAT, _ITEMS = "__tensor__", "__ndarray__", "__tuple__", "__float__", "__items__"
_MARKERS = frozenset({_TENSOR, _NDARRAY, _TUPLE, _FLOAT, _ITEMS})


class _Flattener:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def _key(self, path: list[str]) -> str:
        base = "/".join(path) or "root"
        key, n = base, 1
        while key in self.tensors:
            key, n = f"{base}~{n}", n + 1
        return key

    def encode(self, value: Any, path: list[str]) -> Any:
        if isinstance(value, torch.Tensor):
            key = self._key(path)
            self.tensors[key] = value
            return {_TENSOR: key}
        if isinstance(value, np.ndarray):
            key = self._key(path)
            self.tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
            return {_NDARRAY: key}
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {_FLOAT: repr(value)}
        if isinstance(value, tuple):
            return {_TUPLE: [self.encode(v, [*path, str(i)]) for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, [*path, str(i)]) for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            if all(isinstance(k, str) and k not in _MARKERS for k in value):
                return {k: self.encode(v, [*path, k]) for k, v in value.items()}
            return {_ITEMS: [[self.encode_key(k, path), self.encode(v, [*path, str(k)])] for k, v in value.items()]}
        where = "/".join(path) or "<root>"
        raise TypeError(
            f"cannot store {type(value).__name__} at {where!r}: allowed are tensors, numpy arrays, "
            "None, bool, int, float, str, and lists/tuples/dicts of them"
        )

    def encode_key(self, key: Any, path: list[str]) -> Any:
        if isinstance(key, (torch.Tensor, np.ndarray)):
            raise TypeError(f"dict keys cannot be arrays (under {'/'.join(path) or '<root>'!r})")
        return self.encode(key, path)


def flatten_state(nested: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested structure into safetensors-ready tensors and a JSON skeleton.

    Tensors (and numpy arrays) are replaced by ``{"__tensor__": key}`` placeholders whose
    keys are their paths (``"state/0/momentum_buffer"``). Tuples, non-string dict keys
    (e.g. the int keys of an optimizer state) and non-finite floats are encoded so that
    :func:`unflatten_state` gives back the same types. The tensors are not copied.

    Args:
        nested: Dicts, lists, tuples, tensors, numpy arrays and JSON scalars.

    Returns:
        ``(tensors, skeleton)``; ``skeleton`` is strict-JSON serialisable.

    Example:
        >>> tensors, skeleton = flatten_state({"state": {0: {"buf": torch.zeros(2)}}, "betas": (0.9, 0.99)})
        >>> list(tensors), skeleton["betas"]
        (['state/0/buf'], {'__tuple__': [0.9, 0.99]})
        >>> unflatten_state(tensors, skeleton)["state"][0]["buf"]
        tensor([0., 0.])
    """
    flattener = _Flattener()
    skeleton = flattener.encode(nested, [])
    return flattener.tensors, skeleton


def unflatten_state(tensors: Mapping[str, torch.Tensor], skeleton: Any) -> Any:
    """Rebuild the structure given to :func:`flatten_state` (see its example).

    Args:
        tensors: The tensors by key (e.g. from ``safetensors.torch.load_file``).
        skeleton: The JSON skeleton.

    Returns:
        The nested structure, with tensors taken from ``tensors``.
    """
    if isinstance(skeleton, list):
        return [unflatten_state(tensors, v) for v in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    if len(skeleton) == 1:
        ((marker, payload),) = skeleton.items()
        if marker in (_TENSOR, _NDARRAY):
            if payload not in tensors:
                raise KeyError(f"checkpoint skeleton refers to tensor {payload!r}, which is missing")
            tensor = tensors[payload]
            return tensor.numpy() if marker == _NDARRAY else tensor
        if marker == _TUPLE:
            return tuple(unflatten_state(tensors, v) for v in payload)
        if marker == _FLOAT:
            return float(payload)
        if marker == _ITEMS:
            return {_freeze(unflatten_state(tensors, k)): unflatten_state(tensors, v) for k, v in payload}
    return {k: unflatten_state(tensors, v) for k, v in skeleton.items()}


def _freeze(key: Any) -> Any:
    return tuple(_freeze(k) for k in key) if isinstance(key, (list, tuple)) else key


def _old_dir(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.old"


def _recover(directory: Path) -> None:
    """Finish a swap that was interrupted between its two renames."""
    old = _old_dir(directory)
    if old.is_dir() and not directory.exists():
        try:
            os.replace(old, directory)
        except OSError:  # another process finished the recovery first
            if not directory.is_dir():
                raise


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _trainer_state(trainer: Trainer) -> dict[str, Any]:
    scaler = getattr(trainer, "scaler", None)
    return {
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "hooks": [{"class": type(h).__qualname__, "state": h.state_dict()} for h in trainer.hooks],
        "rng": get_rng_state(),
    }


def save_checkpoint(directory: str | os.PathLike[str], trainer: Trainer) -> Path:
    """Write the trainer's full state into the folder ``directory``, replacing it atomically.

    Args:
        directory: Checkpoint folder (usually ``run_dir / "checkpoint"``).
        trainer: The trainer; uses ``model``, ``optimizer``, ``scheduler``, ``scaler``,
            ``hooks``, ``epoch``, ``global_step`` and ``settings``.

    Returns:
        The checkpoint folder.

    Example:
        >>> # trainer.fit() calls this every `checkpoint_every` epochs:
        >>> # save_checkpoint(run_dir / "checkpoint", trainer)
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    _recover(directory)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        model_state = unwrap_model(trainer.model).state_dict()
        save_safetensors_atomic(tmp / MODEL_FILE, model_state, metadata={"format": CHECKPOINT_FORMAT})
        tensors, skeleton = flatten_state(_trainer_state(trainer))
        save_safetensors_atomic(tmp / STATE_FILE, tensors, metadata={"format": CHECKPOINT_FORMAT})
        meta = {
            "format": CHECKPOINT_FORMAT,
            "epoch": trainer.epoch,
            "global_step": trainer.global_step,
            "settings": trainer.settings.model_dump(mode="json"),
            "files": {"model": MODEL_FILE, "state": STATE_FILE},
            "tensor_keys": sorted(tensors),
            "state": skeleton,
        }
        write_json_atomic(tmp / META_FILE, meta)
        old = _old_dir(directory)
        if old.exists():
            shutil.rmtree(old)
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        _fsync_dir(directory.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_checkpoint_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``state.json`` of a checkpoint folder (JSON only, no tensors).

    Raises:
        FileNotFoundError: No complete checkpoint in ``directory``.
        ValueError: The folder holds something other than a decayprune checkpoint.

    Example:
        >>> # read_checkpoint_meta("runs/a/checkpoint")["epoch"]  -> epochs completed
    """
    directory = Path(directory)
    _recover(directory)
    missing = [f for f in (META_FILE, MODEL_FILE, STATE_FILE) if not (directory / f).is_file()]
    if missing:
        raise FileNotFoundError(f"no complete checkpoint in {directory} (missing {', '.join(missing)})")
    with open(directory / META_FILE, encoding="utf-8") as handle:
        meta = json.load(handle)
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{directory / META_FILE} has format {found!r}; expected {CHECKPOINT_FORMAT!r}")
    return meta


def load_checkpoint(directory: str | os.PathLike[str], trainer: Trainer) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint` into ``trainer``.

    Restores model weights, optimizer, scheduler, AMP scaler, hook states, all RNG
    states, ``trainer.epoch`` and ``trainer.global_step``.

    Returns:
        The checkpoint's ``state.json`` content.

    Raises:
        FileNotFoundError: No complete checkpoint in ``directory``.
        ValueError: The checkpoint does not match the model or the hooks.

    Example:
        >>> # meta = load_checkpoint(run_dir / "checkpoint", trainer); meta["epoch"]
    """
    directory = Path(directory)
    meta = read_checkpoint_meta(directory)
    model_state = load_file(str(directory / MODEL_FILE))
    try:
        unwrap_model(trainer.model).load_state_dict(model_state)
    except RuntimeError as err:
        raise ValueError(
            f"checkpoint {directory} does not fit the model (different architecture or channel counts?): {err}"
        ) from err
    state = unflatten_state(load_file(str(directory / STATE_FILE)), meta["state"])
    hook_states = state["hooks"]
    saved_names = [h["class"] for h in hook_states]
    names = [type(h).__qualname__ for h in trainer.hooks]
    if saved_names != names:
        raise ValueError(f"checkpoint {directory} was written with hooks {saved_names}, the trainer has {names}")
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    scaler = getattr(trainer, "scaler", None)
    if state["scaler"] is not None and scaler is not None and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    for hook, hook_state in zip(trainer.hooks, hook_states):
        hook.load_state_dict(hook_state["state"])
    set_rng_state(state["rng"])
    trainer.epoch = int(meta["epoch"])
    trainer.global_step = int(meta["global_step"])
    return meta
