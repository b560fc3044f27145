"""Importing decayprune (and its integrations package) imports neither transformers nor lightning."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_integrations_are_imported_only_when_used() -> None:
    code = (
        "import sys, decayprune, decayprune.integrations as i\n"
        "assert not {'transformers', 'lightning', 'accelerate'} & set(sys.modules), 'imported eagerly'\n"
        "try:\n    i.NoSuchCallback\nexcept AttributeError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=False
    )
    assert out.returncode == 0, out.stderr
    assert "has no attribute 'NoSuchCallback'" in out.stdout


def test_the_names_resolve_to_callbacks_of_each_library() -> None:
    transformers = pytest.importorskip("transformers")
    from decayprune.integrations import PrunerCallback

    assert issubclass(PrunerCallback, transformers.TrainerCallback)
    lightning = pytest.importorskip("lightning")
    from decayprune.integrations import LightningPrunerCallback

    assert issubclass(LightningPrunerCallback, lightning.pytorch.callbacks.Callback)
