"""One registry shape for models, datasets, pruning methods and criteria (timm's decorator shape).

This module is a leaf: it imports nothing from the rest of the package, so the config schema
can validate names and options against the registries without importing the engine. The
registries fill when their packages are imported (``import decayprune`` imports them all).

Example:
    >>> shapes = Registry("shape")
    >>> @shapes.register("square")
    ... class Square:
    ...     pass
    >>> shapes.get("square") is Square, shapes.names()
    (True, ['square'])
    >>> shapes.get("sqare")
    Traceback (most recent call last):
    ...
    KeyError: "unknown shape 'sqare'; allowed: square; did you mean 'square'?"
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["CRITERIA", "DATASETS", "METHODS", "MODELS", "Registry", "did_you_mean"]

T = TypeVar("T")


def did_you_mean(value: object, allowed: Iterable[str], cutoff: float = 0.6) -> str:
    """``"; did you mean 'x'?"`` for the closest allowed name, or ``""`` when none is close.

    Example:
        >>> did_you_mean("depgrap", ["depgraph", "l1"])
        "; did you mean 'depgraph'?"
    """
    close = difflib.get_close_matches(str(value), list(allowed), n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


class Registry(Generic[T]):
    """Names mapped to objects (classes or factories), filled by a decorator.

    Args:
        kind: What the entries are, used in messages (``"model"``, ``"pruning method"``).
        normalize: Maps a name to its canonical key (e.g. lower-case); identity by default.
    """

    def __init__(self, kind: str, normalize: Callable[[str], str] | None = None) -> None:
        self.kind = kind
        self._normalize = normalize or (lambda name: name)
        self._entries: dict[str, T] = {}

    def key(self, name: str) -> str:
        """The canonical key of ``name``."""
        return self._normalize(name)

    def register(self, name: str, *, overwrite: bool = False) -> Callable[[T], T]:
        """Decorator that records its target under ``name`` and returns it unchanged.

        Registering the same definition twice (a module imported again) replaces the entry;
        a different object under a taken name is refused unless ``overwrite``.
        """
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ValueError(f"{self.kind} name must be a non-empty string without whitespace, got {name!r}")
        key = self.key(name)

        def decorator(obj: T) -> T:
            old = self._entries.get(key)
            if old is not None and not overwrite and not _same_definition(old, obj):
                raise ValueError(f"{self.kind} {key!r} is already registered ({_where(old)}); choose another name")
            self._entries[key] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T, *, overwrite: bool = False) -> T:
        """Record ``obj`` under ``name`` (the non-decorator form of :meth:`register`)."""
        return self.register(name, overwrite=overwrite)(obj)

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests and doctests clean up with it)."""
        self._entries.pop(self.key(name), None)

    def get(self, name: str) -> T:
        """The entry for ``name``; a ``KeyError`` that lists the allowed names otherwise."""
        key = self.key(name) if isinstance(name, str) else name
        if key not in self._entries:
            raise KeyError(self.unknown_message(name))
        return self._entries[key]

    def unknown_message(self, name: object) -> str:
        """``unknown <kind> 'x'; allowed: ...; did you mean ...?``"""
        return f"unknown {self.kind} {self.allowed_message(name)[4:]}"

    def allowed_message(self, name: object) -> str:
        """``got 'x'; allowed: ...; did you mean ...?`` (the config's wording for a bad name)."""
        allowed = self.names()
        return f"got {name!r}; allowed: {', '.join(allowed)}{did_you_mean(name, allowed)}"

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style pattern."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.key(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def _same_definition(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` come from the same source definition (module, qualname, line)."""

    def where(obj: Any) -> tuple[str, str, int] | None:
        code = getattr(obj, "__code__", None)
        line = code.co_firstlineno if code is not None else -1
        qualname = getattr(obj, "__qualname__", None)
        return None if qualname is None else (getattr(obj, "__module__", ""), qualname, line)

    return a is b or (where(a) is not None and where(a) == where(b))


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


MODELS: Registry[Any] = Registry("model")
DATASETS: Registry[Any] = Registry("dataset", normalize=lambda name: name.strip().lower().replace("_", "-"))
METHODS: Registry[Any] = Registry("pruning method")
CRITERIA: Registry[Any] = Registry("criterion")
