"""``python -m decayprune``: the same command line as the ``decayprune`` script."""

from __future__ import annotations

from decayprune.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
