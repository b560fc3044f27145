"""Model registry: register model constructors by name and build them by name.

Importing :mod:`decayprune.models` registers every built-in family in
:data:`decayprune.registry.MODELS`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch.nn as nn

from decayprune.registry import MODELS

__all__ = ["create", "list_models", "model_accepts", "register_model"]

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[F], F]:
    """Register a model constructor under ``name`` (in :data:`decayprune.registry.MODELS`).

    The constructor must accept ``num_classes``, ``in_channels`` and ``width`` keyword
    arguments (plus any model-specific keywords, e.g. ``image_size``).

    Raises:
        ValueError: If ``name`` is empty, contains whitespace, or is already registered to a
            different constructor (the same definition imported twice replaces the entry).

    Example:
        >>> import torch.nn as nn
        >>> @register_model("doc_tiny_cnn")
        ... def doc_tiny_cnn(*, num_classes=10, in_channels=3, width=1.0):
        ...     c = max(1, round(8 * width))
        ...     return nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1), nn.ReLU(),
        ...                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
        >>> list_models("doc_tiny*")
        ['doc_tiny_cnn']
        >>> MODELS.remove("doc_tiny_cnn")
    """
    register = MODELS.register(name)

    def decorator(fn: F) -> F:
        if not callable(fn):
            raise ValueError(f"register_model({name!r}) must decorate a callable, got {fn!r}")
        return register(fn)

    return decorator


def model_accepts(name: str, keyword: str) -> bool:
    """True when the registered constructor ``name`` takes the keyword argument ``keyword``.

    Example:
        >>> model_accepts("mlp", "image_size"), model_accepts("resnet20", "image_size")
        (True, False)
    """
    try:
        return keyword in inspect.signature(MODELS.get(name)).parameters
    except (TypeError, ValueError):
        return False


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
    return MODELS.names(pattern)


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
    if name not in MODELS:
        raise ValueError(MODELS.unknown_message(name))
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, width=width, **kwargs)
