"""Architecture coverage: small random transformers models prune exactly or are refused with a reason."""

from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("transformers")

from transformers_zoo import zoo  # noqa: E402

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


def test_attention_projections_are_refused_with_a_clear_reason(reports: dict) -> None:
    for name in ("bert", "vit", "gpt2", "distilbert"):
        reasons = [f.reason for f in reports[name].frozen if f.kind == "inexact"]
        assert reasons and all("attention" in reason and "heads" in reason for reason in reasons), name


def test_mlp_hidden_units_are_prunable_in_transformers(reports: dict) -> None:
    assert [n for n, _size in reports["bert"].prunable] == [
        "encoder.layer.0.intermediate.dense",
        "encoder.layer.1.intermediate.dense",
    ]
    assert sorted(n for n, _size in reports["gpt2"].prunable) == ["h.0.mlp.c_fc", "h.1.mlp.c_fc"]  # Conv1D
