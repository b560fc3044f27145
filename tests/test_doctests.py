"""Every docstring example in the package runs (the examples are the API's documentation)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import decayprune

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(decayprune.__path__, "decayprune.") if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", ["decayprune", *MODULES])
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_the_walk_found_the_package() -> None:
    assert {"decayprune.pruner", "decayprune.decay.engine", "decayprune.structure.compaction"} <= set(MODULES)
