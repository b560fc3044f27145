"""text-bytes: byte tokens of text files or the generated corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from decayprune.data import load_dataset
from decayprune.data.tokens import SEQ_LEN, load_text_bytes


def test_text_files_become_byte_sequences(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_bytes(b"y" * 200)
    (tmp_path / "a.txt").write_bytes(b"x" * 200)
    splits = load_text_bytes(tmp_path)
    everything = torch.cat([splits.train_tokens, splits.test_tokens]).flatten()
    assert everything.numel() == (401 // SEQ_LEN) * SEQ_LEN and splits.num_test == 1
    assert everything[0].item() == ord("x") and everything[-1].item() == ord("y")  # sorted, joined


def test_generated_corpus_is_fixed_and_subsets_are_seeded() -> None:
    a, b = load_dataset("text-bytes", seed=0, train_subset=16), load_dataset("text-bytes", seed=0, train_subset=16)
    assert torch.equal(a.train_tokens, b.train_tokens) and a.num_train == 16
    c = load_dataset("text-bytes", seed=1, train_subset=16)
    assert not torch.equal(a.train_tokens, c.train_tokens)


def test_missing_or_short_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no .txt files"):
        load_text_bytes(tmp_path)
    (tmp_path / "a.txt").write_text("short")
    with pytest.raises(ValueError, match="at least"):
        load_text_bytes(tmp_path)
