"""Callbacks that drive a :class:`~decayprune.Pruner` from other training stacks.

- :class:`~decayprune.integrations.hf.PrunerCallback`: a Hugging Face ``transformers.TrainerCallback``;
- :class:`~decayprune.integrations.lightning.LightningPrunerCallback`: a Lightning ``Callback``.

Imported lazily: ``import decayprune`` (or this package) imports neither transformers nor lightning;
the first use of a name imports its module.

Example:
    >>> import decayprune.integrations as integrations
    >>> integrations.__all__
    ['LightningPrunerCallback', 'PrunerCallback']
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["LightningPrunerCallback", "PrunerCallback"]

_WHERE = {"PrunerCallback": ".hf", "LightningPrunerCallback": ".lightning"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
