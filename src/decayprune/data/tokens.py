"""Token-sequence data for language models, offline: text files (or a generated corpus) tokenised by bytes.

Dataset ``text-bytes``: every ``*.txt`` file of ``data_dir`` (sorted by name, joined), or, without
``data_dir``, a corpus generated from a fixed seed (short sentences from a small grammar, so a tiny
model can learn it). The bytes are the tokens (vocabulary 256), cut into sequences of
:data:`SEQ_LEN`; the last tenth of the sequences is the test split. Batches are
``(tokens, tokens)``: a causal-LM loss shifts them itself.

Example:
    >>> s = load_text_bytes(None)
    >>> s.vocab_size, s.input_shape, s.num_train > 100, s.train_tokens.dtype
    (256, (32,), True, torch.int64)
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from decayprune.data.seeding import derive_generator

__all__ = ["SEQ_LEN", "TokenSplits", "generated_text", "load_text_bytes"]

#: Tokens per sequence of ``text-bytes``.
SEQ_LEN = 32
_WORDS = {
    "subject": ["the cat", "a dog", "the bird", "my friend", "the teacher", "a child"],
    "verb": ["sees", "likes", "finds", "follows", "draws", "hears"],
    "object": ["the ball", "a tree", "the river", "a small house", "the moon", "red apples"],
    "end": [".", " today.", " again.", " at night."],
}


@dataclass(frozen=True)
class TokenSplits:
    """Train and test token sequences, ``int64`` of shape ``(N, seq_len)`` with values below ``vocab_size``."""

    name: str
    train_tokens: torch.Tensor
    test_tokens: torch.Tensor
    vocab_size: int

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            tokens = getattr(self, f"{split}_tokens")
            if tokens.dim() != 2 or tokens.dtype != torch.int64 or tokens.shape[0] == 0:
                raise ValueError(
                    f"dataset {self.name!r}: {split}_tokens must be a non-empty int64 (N, T) tensor, "
                    f"got {tokens.dtype} {tuple(tokens.shape)}"
                )
            if int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size:
                raise ValueError(f"dataset {self.name!r}: {split}_tokens must lie in [0, {self.vocab_size})")

    @property
    def seq_len(self) -> int:
        """Tokens per sequence."""
        return int(self.train_tokens.shape[1])

    @property
    def input_shape(self) -> tuple[int]:
        """``(seq_len,)`` of one sample."""
        return (self.seq_len,)

    @property
    def num_classes(self) -> int:
        """The vocabulary size (a language model's output classes)."""
        return self.vocab_size

    @property
    def num_train(self) -> int:
        """Number of training sequences."""
        return int(self.train_tokens.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test sequences."""
        return int(self.test_tokens.shape[0])

    def subset(self, train_subset: int | None, test_subset: int | None, *, seed: int = 0) -> TokenSplits:
        """Keep ``n`` random sequences (seeded; original order) of each split; None or too many keeps all."""
        changes = {}
        for split, size, stream in (("train", train_subset, 1), ("test", test_subset, 2)):
            tokens = getattr(self, f"{split}_tokens")
            if size is not None and size < tokens.shape[0]:
                keep = torch.randperm(tokens.shape[0], generator=derive_generator(seed, "subset", stream))[:size]
                changes[f"{split}_tokens"] = tokens[keep.sort().values]
        return dataclasses.replace(self, **changes) if changes else self


def generated_text(sentences: int = 2400, seed: int = 0) -> str:
    """Deterministic text of short sentences ("the cat sees a tree today. ..."), the same for a given seed.

    Example:
        >>> generated_text(2)[:12] == generated_text(2)[:12]
        True
    """
    rng = random.Random(seed)
    parts = (
        f"{rng.choice(_WORDS['subject'])} {rng.choice(_WORDS['verb'])} {rng.choice(_WORDS['object'])}"
        f"{rng.choice(_WORDS['end'])}"
        for _ in range(sentences)
    )
    return " ".join(parts)


def load_text_bytes(data_dir: str | os.PathLike | None) -> TokenSplits:
    """The ``text-bytes`` dataset of ``data_dir``'s ``*.txt`` files (or the generated corpus without one).

    Raises:
        FileNotFoundError: ``data_dir`` holds no ``.txt`` file.
        ValueError: the text is too short for ten sequences.
    """
    if data_dir is None:
        raw = generated_text().encode()
    else:
        files = sorted(Path(data_dir).glob("*.txt"))
        if not files:
            raise FileNotFoundError(f"no .txt files in '{data_dir}' for dataset text-bytes")
        raw = b"\n".join(f.read_bytes() for f in files)
    count = len(raw) // SEQ_LEN
    if count < 10:
        raise ValueError(f"text-bytes needs at least {10 * SEQ_LEN} bytes of text, got {len(raw)}")
    tokens = torch.frombuffer(bytearray(raw[: count * SEQ_LEN]), dtype=torch.uint8).long().view(count, SEQ_LEN)
    split = count - max(1, count // 10)
    return TokenSplits("text-bytes", tokens[:split].clone(), tokens[split:].clone(), 256)
