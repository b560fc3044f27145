"""Attention heads as units: whole heads (GQA: a KV head with its query heads) compact exactly."""

from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("transformers")

from transformers_zoo import head_zoo  # noqa: E402

from decayprune.structure import StructureSet, compact  # noqa: E402
from decayprune.structure.exactness import output_error  # noqa: E402
from decayprune.structure.heads import HeadGroup, find_attention, head_counts  # noqa: E402
from decayprune.structure.serialization import load_pruned, save_pruned  # noqa: E402


def _build(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return head_zoo()[name]()


def _longer(x: torch.Tensor) -> torch.Tensor:
    return torch.randint(1, 99, (2, 11)) if x.dtype == torch.long else torch.randn(2, *x.shape[1:])


@pytest.mark.parametrize("name", sorted(head_zoo()))
def test_heads_and_mlp_units_compact_exactly(name: str) -> None:
    model, x = _build(name)
    s = StructureSet(model, x)
    heads = [g for g in s.layers if isinstance(g, HeadGroup)]
    layouts = find_attention(model)
    assert len(heads) == len(layouts) == 2, [g.name for g in s.layers]
    assert len(s.layers) > len(heads)  # the MLP hidden units too
    before = head_counts(model)
    dead = [g.first + 1 for g in s.layers]  # one head unit of each attention layer, one MLP unit each
    s.set_pruned(dead)
    s.zero_pruned_()
    other = _longer(x)
    optimizer = torch.optim.Adam(model.parameters())
    model(x)[0].float().sum().backward()
    optimizer.step()  # Adam moments to remap
    s.zero_pruned_()
    with torch.no_grad():
        masked, masked_other = model(x), model(other)
    compact(s, optimizer)
    with torch.no_grad():
        assert output_error(masked, model(x)) < 1e-5
        assert output_error(masked_other, model(other)) < 1e-5  # another batch size and length
    for (attn, q, kv), (_a, q0, kv0), layout in zip(head_counts(model), before, layouts, strict=True):
        rep = q0 // kv0
        assert (q, kv) == (q0 - rep, kv0 - 1), attn  # a KV head leaves with the query heads sharing it
        module = model.get_submodule(layout.attention)
        for attr, value in {"num_heads": q, "num_attention_heads": q, "num_key_value_heads": kv}.items():
            if hasattr(module, attr) and isinstance(getattr(module, attr), int):
                assert getattr(module, attr) == value, (attn, attr)
        if hasattr(module, "split_size"):
            assert module.split_size == q * layout.head_dim
    for p in model.parameters():
        state = optimizer.state.get(p)
        if state:
            assert state["exp_avg"].shape == p.shape
    model(x)[0].float().sum().backward()  # trains on after compaction
    optimizer.step()


def test_pruned_heads_round_trip_through_the_spec(tmp_path) -> None:
    model, x = _build("llama-gqa")
    s = StructureSet(model, x)
    s.set_pruned([g.first for g in s.layers if isinstance(g, HeadGroup)][:1])
    s.zero_pruned_()
    compact(s)
    save_pruned(model, tmp_path / "m")
    fresh, _ = _build("llama-gqa")
    loaded = load_pruned(tmp_path / "m", fresh)
    assert head_counts(loaded) == head_counts(model) != head_counts(_build("llama-gqa")[0])
    with torch.no_grad():
        assert output_error(model(x), loaded(x)) == 0.0


def test_gqa_unit_is_a_kv_head_with_its_query_heads() -> None:
    model, x = _build("llama-gqa")
    group = next(g for g in StructureSet(model, x).layers if isinstance(g, HeadGroup))
    assert (group.size, group.heads_per_unit, group.block) == (2, 2, 16)  # 2 KV heads, 2 query heads each, d=8
    by_name = {sl.name.rsplit(".", 2)[-2]: ids for sl, ids in group.slices_of() if sl.name.endswith("weight")}
    assert (by_name["q_proj"] - group.first).tolist() == [0] * 16 + [1] * 16
    assert (by_name["k_proj"] - group.first).tolist() == [0] * 8 + [1] * 8
    assert (by_name["o_proj"] - group.first).tolist() == [0] * 16 + [1] * 16


def test_mha_without_gqa_needs_two_heads_and_ignored_projections_keep_heads() -> None:
    model, x = _build("bert")
    s = StructureSet(model, x, ignored_layers=["encoder.layer.0.attention.self.key"])
    assert [g.name for g in s.layers if isinstance(g, HeadGroup)] == ["encoder.layer.1.attention.self.query"]


def test_dpm_sp_sr_run_prunes_heads_and_compacts_exactly() -> None:
    from decayprune.jobs.model_check import check_model

    model, x = _build("llama-gqa")
    report = check_model(model, x, steps=6, target_macs_fraction=0.6)
    assert report.passed and report.error is not None and report.error < 1e-5, report.message
    assert any(n.endswith("self_attn.q_proj") for n, _size in report.prunable)


@pytest.mark.parametrize("name", ["llama-gqa", "qwen2-gqa"])
def test_query_head_units_keep_kv_heads_and_compact_exactly(name: str) -> None:
    model, x = _build(name)
    s = StructureSet(model, x, head_units="query")
    heads = [g for g in s.layers if isinstance(g, HeadGroup)]
    assert [(g.units, g.size, g.channel_groups) for g in heads] == [("query", 2, 2)] * 2  # 2 slots per KV group
    q_ids = next(ids for sl, ids in heads[0].slices_of() if sl.name.endswith("q_proj.weight")) - heads[0].first
    assert q_ids.view(4, 8)[:, 0].tolist() == [0, 1, 0, 1]  # query heads 0, 2 share slot 0 (KV heads 0, 1)
    s.set_pruned([g.first for g in heads] + [g.first for g in s.layers if not isinstance(g, HeadGroup)])
    s.zero_pruned_()
    other = _longer(x)
    with torch.no_grad():
        masked, masked_other = model(x), model(other)
    compact(s)
    with torch.no_grad():
        assert output_error(masked, model(x)) < 1e-5
        assert output_error(masked_other, model(other)) < 1e-5
    assert [(q, kv) for _a, q, kv in head_counts(model)] == [(2, 2), (2, 2)]
    attn = model.get_submodule(find_attention(model)[0].attention)
    assert attn.num_key_value_groups == 1


def test_head_units_are_validated() -> None:
    from pydantic import ValidationError

    from decayprune import PruneSettings

    with pytest.raises(ValidationError, match="head_units"):
        PruneSettings(head_units="heads")
    model, x = _build("bert")
    with pytest.raises(ValueError, match="head_units"):
        StructureSet(model, x, head_units="both")
    same = StructureSet(model, x, head_units="query")  # no GQA: one head per unit either way
    assert [g.size for g in same.layers if isinstance(g, HeadGroup)] == [4, 4]


def test_multi_query_attention_prunes_query_heads_in_query_mode() -> None:
    import transformers
    from transformers_zoo import GQA

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**GQA, "num_key_value_heads": 1})).eval()
    x = torch.randint(1, 99, (1, 8))
    assert not [g for g in StructureSet(model, x).layers if isinstance(g, HeadGroup)]  # one KV head: no kv unit
    s = StructureSet(model, x, head_units="query")
    heads = [g for g in s.layers if isinstance(g, HeadGroup)]
    assert [g.size for g in heads] == [4, 4]
    s.set_pruned([g.first + 1 for g in heads] + [g.first + 3 for g in heads])
    s.zero_pruned_()
    with torch.no_grad():
        masked = model(x)
    compact(s)
    with torch.no_grad():
        assert output_error(masked, model(x)) < 1e-5
    assert [(q, kv) for _a, q, kv in head_counts(model)] == [(2, 1), (2, 1)]
