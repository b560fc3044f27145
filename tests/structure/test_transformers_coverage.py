"""Architecture coverage: small random transformers models prune exactly or are refused with a reason."""

from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("transformers")

from transformers_zoo import head_zoo, zoo  # noqa: E402

from decayprune.jobs.model_check import check_model, format_report  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reports() -> dict:
    import transformers

    transformers.logging.set_verbosity_error()
    out = {}
    for name, build in zoo().items():
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, x = build()
            out[name] = check_model(model, x, name=name)
    return out


def test_at_least_15_architectures_and_13_prune_exactly(reports: dict) -> None:
    passed = [n for n, r in reports.items() if r.passed]
    assert len(reports) >= 15
    assert len(passed) >= 13, "\n\n".join(format_report(r) for r in reports.values() if not r.passed)


@pytest.mark.parametrize("name", sorted(zoo()))
def test_each_architecture_is_exact_or_refused_with_a_reason(reports: dict, name: str) -> None:
    r = reports[name]
    if r.passed:
        assert r.error is not None and r.error < 1e-5
        assert r.macs_after < 0.8 * r.macs_before and r.params_after < r.params_before
    else:
        # Refused, never a crash or a silently wrong model: a message, and no inexact compaction.
        assert r.message and "compaction failed" not in r.message, format_report(r)
        assert r.error is None or r.error <= r.tolerance, format_report(r)
    for f in r.frozen:
        assert f.reason and f.kind in ("output", "ignored", "unsupported", "norm", "inexact")


@pytest.fixture(scope="module")
def head_reports() -> dict:
    import transformers

    transformers.logging.set_verbosity_error()
    out = {}
    for name, build in head_zoo().items():
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, x = build()
            out[name] = check_model(model, x, name=name)
    return out


@pytest.mark.parametrize("name", sorted(head_zoo()))
def test_heads_column_heads_and_mlp_units_prune_exactly(head_reports: dict, name: str) -> None:
    from decayprune.structure.heads import find_attention

    r = head_reports[name]
    assert r.passed and r.error is not None and r.error < 1e-5, format_report(r)
    model, _x = head_zoo()[name]()
    roots = {h.parts[0][0] for h in find_attention(model)}
    names = {n for n, _size in r.prunable}
    assert len(roots) == 2 and roots <= names, (roots, names)  # every attention layer's heads
    assert names - roots, names  # and the MLP hidden units
    assert not [f for f in r.frozen if f.layer in roots], r.frozen


def test_attention_without_a_known_layout_is_refused_with_a_clear_reason(reports: dict) -> None:
    reasons = [f.reason for f in reports["distilbert"].frozen if f.kind == "inexact"]
    assert reasons and all("attention" in reason and "heads" in reason for reason in reasons)


def test_mlp_hidden_units_and_heads_are_prunable_in_transformers(reports: dict) -> None:
    assert [n for n, _size in reports["bert"].prunable] == [
        "encoder.layer.0.intermediate.dense",
        "encoder.layer.1.intermediate.dense",
        "encoder.layer.0.attention.self.query",
        "encoder.layer.1.attention.self.query",
    ]
    assert sorted(n for n, _size in reports["gpt2"].prunable) == [
        "h.0.attn.c_attn",
        "h.0.mlp.c_fc",
        "h.1.attn.c_attn",
        "h.1.mlp.c_fc",
    ]  # Conv1D
