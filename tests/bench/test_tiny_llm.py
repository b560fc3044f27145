"""The tiny-LLM example runs offline and prunes whole KV heads and MLP units to the MACs target."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("transformers")


def test_tiny_llm_example_prunes_heads_and_mlp(capsys) -> None:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "tiny_llm.py"
    spec = importlib.util.spec_from_file_location("tiny_llm", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--pretrain-steps", "10", "--prune-steps", "60", "--finetune-steps", "2", "--decay-steps", "5"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "%" in line]
    assert len(rows) == 3
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells[0][3] == "8/4, 8/4"
    macs = float(cells[1][2].rstrip("%"))
    assert macs <= 61.0  # target 60% (+1%)
    heads = [tuple(map(int, h.split("/"))) for h in cells[1][3].split(", ")]
    assert sum(q for q, _kv in heads) < 16 and all(q == 2 * kv for q, kv in heads)  # whole KV groups left
    assert all(re.fullmatch(r"\d+\.\d+", c[1]) for c in cells)  # finite perplexities
