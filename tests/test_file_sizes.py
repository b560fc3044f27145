"""Small modules: no source file of the package runs past 500 lines."""

from __future__ import annotations

from pathlib import Path

import decayprune

LIMIT = 500


def test_no_source_file_is_over_the_limit() -> None:
    root = Path(decayprune.__file__).parent
    long = {str(p.relative_to(root)): n for p in root.rglob("*.py") if (n := len(p.read_text().splitlines())) > LIMIT}
    assert not long, f"files over {LIMIT} lines: {long}"
