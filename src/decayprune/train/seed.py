"""Seeding and capture/restore of every random-number generator the loop uses."""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import torch

__all__ = ["get_rng_state", "set_rng_state", "set_seed"]


def set_seed(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and all CUDA devices).

    Example:
        >>> set_seed(3); a = torch.rand(2)
        >>> set_seed(3); torch.equal(a, torch.rand(2))
        True
    """
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _words_to_bytes(words: Any) -> torch.Tensor:
    return torch.from_numpy(np.asarray(words, dtype="<u4").copy().view(np.uint8))


def _bytes_to_words(data: torch.Tensor) -> np.ndarray:
    return data.numpy().astype(np.uint8).view("<u4").astype(np.uint32)


def get_rng_state() -> dict[str, Any]:
    """Capture all RNG states as uint8 tensors plus a few JSON values.

    Returns:
        A nested dict suitable for :func:`decayprune.train.checkpoint.flatten_state`.

    Example:
        >>> state = get_rng_state(); x = torch.rand(1)
        >>> set_rng_state(state); torch.equal(x, torch.rand(1))
        True
    """
    py_version, py_words, py_gauss = random.getstate()
    np_name, np_words, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": py_version, "words": _words_to_bytes(py_words), "gauss": py_gauss},
        "numpy": {
            "name": np_name,
            "words": _words_to_bytes(np_words),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`get_rng_state` (see its example)."""
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    py = state["python"]
    random.setstate((py["version"], tuple(int(w) for w in _bytes_to_words(py["words"])), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], _bytes_to_words(npy["words"]), npy["pos"], npy["has_gauss"], npy["gauss"]))
    cuda_states = list(state.get("cuda") or [])
    if cuda_states and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if count != len(cuda_states):
            warnings.warn(
                f"checkpoint holds {len(cuda_states)} CUDA RNG states but {count} devices are visible; "
                "restoring the first ones only",
                stacklevel=2,
            )
        for index, cuda_state in enumerate(cuda_states[:count]):
            torch.cuda.set_rng_state(cuda_state.to(torch.uint8).cpu(), device=index)
