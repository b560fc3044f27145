"""A tiny LLaMA-style model pruned with DPM (attention heads + MLP units), offline on the CPU.

Usage:
    python benchmarks/tiny_llm.py                  # ~1-2 minutes on 2 CPU cores
    python benchmarks/tiny_llm.py --target 0.5 --policy oneshot

The text is generated here (sentences from a small grammar, character tokens), the model is a
``LlamaForCausalLM`` from a config (4 query / 2 KV heads, random initialisation), so nothing is
downloaded. It is trained, then pruned with ``depgraph`` selections and DPM decay (``sp+sr`` by
default) while training continues, compacted (whole KV heads with their query heads, gated-MLP
units), and fine-tuned briefly. The table gives held-out perplexity, MACs and heads per layer.
"""

from __future__ import annotations

import argparse
import math
import random
import time

import torch
import torch.nn.functional as F

SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "a small bird", "the teacher", "our team"]
VERBS = ["sees", "likes", "finds", "carries", "paints", "follows", "calls"]
OBJECTS = ["the ball", "a red box", "the river", "an apple", "the blue door", "a long road", "the moon"]
ENDINGS = ["today", "at night", "again", "in the park", "with care", "every day", "slowly"]


def make_text(sentences: int, seed: int) -> str:
    """Sentences from a small grammar: learnable structure, no download."""
    rng = random.Random(seed)
    parts = [
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(ENDINGS)}."
        for _ in range(sentences)
    ]
    return " ".join(parts)


class Corpus:
    """Character tokens of the generated text, split into train and held-out parts."""

    def __init__(self, seed: int = 0) -> None:
        text = make_text(4000, seed)
        self.chars = sorted(set(text))
        ids = torch.tensor([self.chars.index(c) for c in text], dtype=torch.long)
        cut = int(0.9 * ids.numel())
        self.train, self.valid = ids[:cut], ids[cut:]

    def batch(self, gen: torch.Generator, size: int, length: int) -> torch.Tensor:
        starts = torch.randint(0, self.train.numel() - length - 1, (size,), generator=gen)
        return torch.stack([self.train[s : s + length] for s in starts.tolist()])


def lm_loss(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids).logits
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


@torch.no_grad()
def perplexity(model: torch.nn.Module, ids: torch.Tensor, length: int = 64) -> float:
    model.eval()
    chunks = ids[: ids.numel() // length * length].view(-1, length)
    total = sum(
        float(lm_loss(model, chunks[i : i + 32])) * chunks[i : i + 32].shape[0] for i in range(0, len(chunks), 32)
    )
    model.train()
    return math.exp(total / chunks.shape[0])


def train(model, corpus, steps, lr, gen, pruner=None, optimizer=None, batch=16, length=64):
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        loss = lm_loss(model, corpus.batch(gen, batch, length))
        optimizer.zero_grad()
        loss.backward()
        if pruner is not None:
            pruner.after_backward()
        optimizer.step()
        if pruner is not None:
            pruner.after_step()
    return optimizer


def build(vocab: int):
    import transformers

    transformers.logging.set_verbosity_error()
    config = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=128,
        use_cache=False,
        tie_word_embeddings=False,
    )
    return transformers.LlamaForCausalLM(config)


def main(argv: list[str] | None = None) -> None:
    from decayprune import DecaySettings, Pruner, PruneSettings, count_cost, find_attention

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.6, help="MACs fraction to keep (default 0.6)")
    parser.add_argument("--policy", default="sp+sr", choices=["oneshot", "sp", "sp+sr"])
    parser.add_argument("--pretrain-steps", type=int, default=400)
    parser.add_argument("--prune-steps", type=int, default=200)
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--decay-steps", type=int, default=20, help="DPM's N (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    corpus = Corpus(args.seed)
    model = build(len(corpus.chars))
    example = corpus.valid[:64].view(1, -1)
    start = time.perf_counter()
    train(model, corpus, args.pretrain_steps, 3e-3, gen)
    rows = [("dense", perplexity(model, corpus.valid), count_cost(model, example).macs, _heads(model))]

    settings = PruneSettings(
        method="depgraph",
        target_macs_fraction=args.target,
        iterative_steps=2,
        end_epoch=1,
        decay=DecaySettings(policy=args.policy, steps=args.decay_steps),
    )
    pruner = Pruner(model, example, settings, total_steps=args.prune_steps, steps_per_epoch=args.prune_steps // 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    pruner.bind(optimizer)
    train(model, corpus, args.prune_steps, 1e-3, gen, pruner=pruner, optimizer=optimizer)
    pruner.compact()
    rows.append(
        (
            f"pruned ({args.policy}), compacted",
            perplexity(model, corpus.valid),
            count_cost(model, example).macs,
            _heads(model),
        )
    )
    train(model, corpus, args.finetune_steps, 1e-3, gen, optimizer=optimizer)
    rows.append(
        (
            f"+ {args.finetune_steps} fine-tune steps",
            perplexity(model, corpus.valid),
            count_cost(model, example).macs,
            _heads(model),
        )
    )
    elapsed = time.perf_counter() - start

    base = rows[0][2]
    print(
        f"tiny LLaMA (hidden 64, 2 layers, 8 query / 4 KV heads), {len(corpus.chars)} character tokens, "
        f"target {args.target:.0%} MACs, depgraph + {args.policy} (N={args.decay_steps}), seed {args.seed}"
    )
    print("| model | held-out perplexity | MACs | heads per layer (query/KV) |")
    print("|---|---|---|---|")
    for name, ppl, macs, heads in rows:
        print(f"| {name} | {ppl:.3f} | {macs / base:.1%} | {heads} |")
    print(f"({elapsed:.0f} s; layers found: {len(find_attention(model))} attention)")


def _heads(model: torch.nn.Module) -> str:
    from decayprune import find_attention

    return ", ".join(f"{h.num_heads}/{h.num_kv_heads}" for h in find_attention(model))


if __name__ == "__main__":
    main()
