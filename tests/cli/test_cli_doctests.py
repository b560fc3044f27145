"""Every docstring example of decayprune.cli runs."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import decayprune.cli as package

MODULES = sorted(f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__))


@pytest.mark.parametrize("name", [package.__name__, *MODULES])
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
