"""Heads of ``nn.MultiheadAttention``: units, exact compaction into PrunedMultiheadAttention, files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from decayprune import DecaySettings, Pruner, PruneSettings
from decayprune.structure import StructureSet, compact, load_pruned, save_pruned
from decayprune.structure.exactness import output_error
from decayprune.structure.mha import MhaHeadGroup, PrunedMultiheadAttention, compact_mha, mha_refusal


class Block(nn.Module):
    """A custom block calling nn.MultiheadAttention directly, with a padding mask."""

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Linear(6, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=batch_first)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        if not self.batch_first:
            h = h.transpose(0, 1)
        pad = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool)
        pad[:, -1] = True
        a, _ = self.attn(h, h, h, key_padding_mask=pad, need_weights=False)
        out = h + a
        return self.head(out if self.batch_first else out.transpose(0, 1))


def _encoder() -> nn.Module:
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    return nn.Sequential(
        nn.Linear(6, 16), nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Linear(16, 3)
    )


MODELS = {"block-batch-first": lambda: Block(True), "block-seq-first": lambda: Block(False), "encoder": _encoder}


def _heads(s: StructureSet) -> list[MhaHeadGroup]:
    return [g for g in s.layers if isinstance(g, MhaHeadGroup)]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_mha_heads_are_units_and_compact_exactly(name: str) -> None:
    torch.manual_seed(0)
    model, x = MODELS[name](), torch.randn(2, 5, 6)
    s = StructureSet(model, x)
    heads = _heads(s)
    assert heads and all(g.size == 4 and g.block == 4 for g in heads)
    macs = s.macs()
    s.set_pruned([g.first + 1 for g in heads] + [heads[0].first + 3])
    assert s.macs() < macs  # the projections count in the cost model
    optimizer = torch.optim.Adam(model.parameters())
    model(x).square().mean().backward()
    optimizer.step()
    s.zero_pruned_(optimizer)
    model.eval()
    with torch.no_grad():
        masked = model(x)
    compact(s, optimizer)
    replaced = [m for m in model.modules() if isinstance(m, PrunedMultiheadAttention)]
    assert sorted(m.num_heads for m in replaced) == sorted([2] + [3] * (len(heads) - 1))
    with torch.no_grad():
        assert output_error(masked, model(x)) < 1e-5
    model.train()  # training goes on with the remapped optimizer
    optimizer.zero_grad()
    model(x).square().mean().backward()
    optimizer.step()
    again = StructureSet(model, x)  # the pruned module's heads are units again
    assert sorted(g.size for g in again.layers if g.name.endswith("q_proj")) == sorted(m.num_heads for m in replaced)


@pytest.mark.parametrize("policy", ["oneshot", "sp+sr"])
def test_pruner_prunes_mha_heads_and_compacts_exactly(policy: str) -> None:
    torch.manual_seed(0)
    model, x = _encoder(), torch.randn(2, 5, 6)
    settings = PruneSettings(
        method="random",
        target_macs_fraction=0.8,
        iterative_steps=1,
        verify=False,
        ignored_layers=["1.layers.0.linear1", "1.layers.1.linear1"],
        decay=DecaySettings(policy=policy, steps=3),
    )
    pruner = Pruner(model, x, settings, total_steps=12)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    pruner.bind(optimizer)
    for _ in range(12):
        loss = model(x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        pruner.after_backward()
        optimizer.step()
        pruner.after_step()
    pruner.finish()
    pruner.structures.zero_pruned_(optimizer)
    assert int(pruner.structures.pruned.sum()) > 0
    model.eval()
    with torch.no_grad():
        masked = model(x)
    pruner.compact()
    assert any(isinstance(m, PrunedMultiheadAttention) for m in model.modules())
    with torch.no_grad():
        assert output_error(masked, model(x)) < 1e-5


def test_pruned_mha_round_trips_through_the_spec(tmp_path) -> None:
    torch.manual_seed(0)
    model, x = _encoder().eval(), torch.randn(2, 5, 6)
    s = StructureSet(model, x)
    s.set_pruned([_heads(s)[1].first + 2])
    s.zero_pruned_()
    compact(s)
    save_pruned(model, tmp_path / "m")
    loaded = load_pruned(tmp_path / "m", _encoder()).eval()
    attn = loaded[1].layers[1].self_attn
    assert isinstance(attn, PrunedMultiheadAttention) and attn.num_heads == 3
    assert attn.kept_heads.tolist() == [0, 1, 3]
    with torch.no_grad():
        assert output_error(model(x), loaded(x)) == 0.0


def test_refused_mha_layouts_are_frozen_with_a_reason() -> None:
    assert "add_bias_kv" in str(mha_refusal(nn.MultiheadAttention(8, 2, add_bias_kv=True)))  # (not traceable)
    assert "add_zero_attn" in str(mha_refusal(nn.MultiheadAttention(8, 2, add_zero_attn=True)))

    class Cross(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, kdim=4, vdim=4, batch_first=True)
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
            return self.head(self.attn(x, memory, memory)[0])

    s = StructureSet(Cross(), (torch.randn(1, 3, 8), torch.randn(1, 2, 4)))
    assert not _heads(s) and any("kdim" in f.reason for f in s.frozen if f.layer == "attn")


def test_pruned_module_matches_mha_with_masks_and_per_head_masks() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 4).eval()
    x = torch.randn(5, 2, 8)
    causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    full = PrunedMultiheadAttention.from_mha(mha)
    for kwargs in [{}, {"attn_mask": causal, "is_causal": True}, {"average_attn_weights": False}]:
        a, b = mha(x, x, x, **kwargs), full(x, x, x, **kwargs)
        assert torch.allclose(a[0], b[0], atol=1e-6) and torch.allclose(a[1], b[1], atol=1e-6)
    assert full(x, x, x, need_weights=False)[1] is None
    with torch.no_grad():  # a per-head 3-D mask of the unpruned module selects the kept heads' rows
        mha.in_proj_weight.view(3, 4, 2, 8)[:, 1] = 0
        mha.out_proj.weight.view(8, 4, 2)[:, 1] = 0
    per_head = torch.randn(2 * 4, 5, 5)
    net = nn.Module()
    net.attn = mha
    reference = mha(x, x, x, attn_mask=per_head)[0]
    pruned = compact_mha(net, "attn", torch.tensor([1]))
    assert torch.allclose(pruned(x, x, x, attn_mask=per_head)[0], reference, atol=1e-6)
    with pytest.raises(RuntimeError, match="is_causal"):
        pruned(x, x, x, is_causal=True)


def test_an_activation_criterion_is_refused_on_mha_heads_and_a_weight_criterion_scores_them() -> None:
    from decayprune.criteria import create_criterion
    from decayprune.criteria.view import ScoringView

    torch.manual_seed(0)
    model, x = Block(True), torch.randn(2, 5, 6)
    batches = [(x, torch.randn(2, 5, 3))]
    s = StructureSet(model, x)
    heads = _heads(s)
    ctx = ScoringView(model, s, loss_fn=lambda out, y: (out - y).pow(2).mean(), calibration_data=batches)
    with pytest.raises(ValueError, match="reads activations, and the units of 'attn' have none"):
        create_criterion("hrank").score(ctx)
    scores = create_criterion("group_norm").score(ctx)
    assert bool((scores[heads[0].first : heads[0].first + heads[0].size] > 0).all())


def test_adam_steps_after_compaction_count_once_per_optimizer_step() -> None:
    torch.manual_seed(0)
    net = nn.Module()
    net.attn = nn.MultiheadAttention(8, 4, batch_first=True)
    optimizer = torch.optim.Adam(net.parameters())
    x = torch.randn(2, 3, 8)
    net.attn(x, x, x)[0].sum().backward()
    optimizer.step()
    new = compact_mha(net, "attn", torch.tensor([1]), optimizer)
    optimizer.zero_grad()
    new(x, x, x)[0].sum().backward()
    optimizer.step()
    layers = (new.q_proj, new.k_proj, new.v_proj, new.out_proj)
    assert [float(optimizer.state[m.weight]["step"]) for m in layers] == [2.0] * 4
