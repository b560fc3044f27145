"""Layering: the library does not pull in the application layer; config pulls in no engine."""

from __future__ import annotations

import subprocess
import sys

import pytest

_CHECK = """
import sys, types, pathlib
import decayprune as real
if {bare}:  # a bare package object: import the subpackage without running decayprune/__init__.py
    for name in [m for m in sys.modules if m.startswith("decayprune")]:
        del sys.modules[name]
    pkg = types.ModuleType("decayprune")
    pkg.__path__ = [str(pathlib.Path(real.__file__).parent)]
    sys.modules["decayprune"] = pkg
    for name in [m for m in sys.modules if m.startswith("torch_pruning")]:
        del sys.modules[name]
import {module}
bad = sorted(m for m in sys.modules if {predicate})
assert not bad, bad
"""


@pytest.mark.parametrize(
    ("module", "bare", "predicate"),
    [
        ("decayprune", False, "m.startswith(('decayprune.cli', 'decayprune.jobs'))"),
        (
            "decayprune.config",
            True,
            "m.startswith(('torch_pruning', 'decayprune.structure', 'decayprune.decay', "
            "'decayprune.pruner', 'decayprune.methods', 'decayprune.cli', 'decayprune.jobs'))",
        ),
        ("decayprune.jobs", False, "m.startswith('decayprune.cli')"),
    ],
)
def test_import_does_not_pull_in(module: str, bare: bool, predicate: str) -> None:
    code = _CHECK.format(module=module, bare=bare, predicate=predicate)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
