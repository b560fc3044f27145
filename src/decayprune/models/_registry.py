"""Model registry: register model constructors by name and build them by name.

Importing :mod:`decayprune.models` registers every built-in family.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable, TypeVar

import torch.nn as nn

__all__ = ["create", "list_models", "register_model"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[F], F]:
    """Register a model constructor under ``name``.

    The constructor must accept ``num_classes``, ``in_channels`` and ``width`` keyword
    arguments (plus any model-specific keywords).

    Args:
        name: Registry key; a non-empty string without whitespace.

    Returns:
        A decorator that records the constructor and returns it unchanged.

    Raises:
        ValueError: If ``name`` is empty, contains whitespace, or is already registered to a
            different constructor. Registering the same definition again (the defining module
            imported twice, e.g. by a reload or doctest collection) replaces the entry.

    Example:
        >>> import torch.nn as nn
        >>> @register_model("doc_tiny_cnn")
        ... def doc_tiny_cnn(*, num_classes=10, in_channels=3, width=1.0):
        ...     c = max(1, round(8 * width))
        ...     return nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1), nn.ReLU(),
        ...                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
        >>> list_models("doc_tiny*")
        ['doc_tiny_cnn']
    """
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise ValueError(f"model name must be a non-empty string without whitespace, got {name!r}")

    def decorator(fn: F) -> F:
        if name in _REGISTRY and not _same_definition(_REGISTRY[name], fn):
            raise ValueError(
                f"model name {name!r} is already registered (by {_REGISTRY[name].__module__}."
                f"{getattr(_REGISTRY[name], '__qualname__', _REGISTRY[name])}); choose another name"
            )
        if not callable(fn):
            raise ValueError(f"register_model({name!r}) must decorate a callable, got {fn!r}")
        _REGISTRY[name] = fn
        return fn

    return decorator


def _same_definition(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """True when ``a`` and ``b`` come from the same source definition (file, line, qualname)."""

    def where(fn: Callable[..., Any]) -> tuple[str, int, str] | None:
        code = getattr(fn, "__code__", None)
        if code is None:
            return None
        return code.co_filename, code.co_firstlineno, getattr(fn, "__qualname__", "")

    return a is b or (where(a) is not None and where(a) == where(b))


def list_models(pattern: str = "*") -> list[str]:
    """Return the sorted names of registered models matching a shell-style pattern.

    Args:
        pattern: An :func:`fnmatch.fnmatch` pattern, e.g. ``"resnet*"``.

    Returns:
        Sorted list of matching model names (possibly empty).

    Example:
        >>> from decayprune.models import list_models
        >>> list_models("resnet5*")
        ['resnet56']
    """
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def create(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    width: float = 1.0,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model by name.

    Args:
        name: A name from :func:`list_models`.
        num_classes: Number of output logits.
        in_channels: Number of input image channels.
        width: Multiplier on every hidden channel count (rounded, at least 1 channel).
        **kwargs: Model-specific options (e.g. ``image_size`` for ``mlp``).

    Returns:
        A freshly initialized ``nn.Module``.

    Raises:
        ValueError: If ``name`` is not registered (the message lists the available names and
            the closest matches) or an argument is out of range.

    Example:
        >>> import torch
        >>> from decayprune.models import create
        >>> model = create("resnet20", num_classes=7)
        >>> model(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 7])
    """
    if name not in _REGISTRY:
        available = sorted(_REGISTRY)
        close = difflib.get_close_matches(str(name), available, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} Available models: {', '.join(available)}"
        )
    return _REGISTRY[name](num_classes=num_classes, in_channels=in_channels, width=width, **kwargs)
