"""DHSPG's per-group arithmetic, checked on hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from decayprune.methods.dhspg_math import (
    adaptive_lambda,
    cap_projections,
    cosine_x_d,
    half_space_mask,
    redundancy_scores,
    top_k_redundant,
)


def test_cosine_by_hand() -> None:
    # x = (3, 4), d = (-4, 3): orthogonal; x = (1, 0), d = (2, 0): parallel; zero d: 0.
    xx = torch.tensor([25.0, 1.0, 4.0])
    xd = torch.tensor([0.0, 2.0, 0.0])
    dd = torch.tensor([25.0, 4.0, 0.0])
    assert cosine_x_d(xx, xd, dd).tolist() == [0.0, 1.0, 0.0]


def test_redundancy_scores_by_hand() -> None:
    cos = torch.tensor([0.6, 0.8, 0.0])
    avg = torch.tensor([1.0, 0.5, 0.25])  # 1 / avg ~ (1, 2, 4), norm ~ sqrt(21)
    got = redundancy_scores(cos, avg)
    inv = [1 / (1 + 1e-6), 1 / (0.5 + 1e-6), 1 / (0.25 + 1e-6)]
    inv_norm = math.sqrt(sum(v * v for v in inv))
    want = [0.5 * c / 1.0 + 0.5 * v / inv_norm for c, v in zip([0.6, 0.8, 0.0], inv, strict=True)]
    assert got.tolist() == pytest.approx(want, rel=1e-6)
    assert int(torch.argmax(got)) == 1  # 0.4 + 0.218 beats the smallest group (0 + 0.436)


def test_top_k_and_per_layer_rounding() -> None:
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.2, 0.3, 0.8, 0.6])
    assert top_k_redundant(scores, 3).nonzero().flatten().tolist() == [1, 3, 6]
    assert not top_k_redundant(scores, 0).any()
    layer_of = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    # top-3 = {1, 3, 6}: layer 0 keeps 4 of 6 (already a multiple of 2), layer 1 has 2 groups <= 2: keeps both.
    assert top_k_redundant(scores, 3, layer_of, 2).nonzero().flatten().tolist() == [1, 3]
    # top-5 = {1, 3, 6, 7, 2}: layer 0 keeps 3 -> round(1.5) * 2 = 4 kept, so 2 redundant (the best two).
    assert top_k_redundant(scores, 5, layer_of, 2).nonzero().flatten().tolist() == [1, 3]
    with pytest.raises(ValueError, match="k must be"):
        top_k_redundant(scores, 9)


def test_adaptive_lambda_cases_by_hand() -> None:
    xx = torch.tensor([1.0, 1.0, 1.0, 1.0, 4.0])
    xd = torch.tensor([-0.5, -0.9, -0.01, 0.3, -1.0])
    dd = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0])
    lam = adaptive_lambda(xx, xd, dd, lmbda=0.1, amplify=2.0, hat_coeff=100.0).tolist()
    # 0: lb 0.5, ub 2 -> 2 * 0.5 = 1.0 within [0.1, 10] and < ub.
    assert lam[0] == pytest.approx(1.0)
    # 1: lb 0.9, ub 1/0.9 -> 1.8 >= ub -> midpoint.
    assert lam[1] == pytest.approx((0.9 + 1 / 0.9) / 2)
    # 2: lb 0.01 -> 0.02 clipped up to lambda 0.1 (ub 100).
    assert lam[2] == pytest.approx(0.1)
    # 3: <x, d> > 0: plain lambda.
    assert lam[3] == pytest.approx(0.1)
    # 4: ||x|| = 2, lb = 0.5, ub = 1 * 2 / 1 = 2 -> 1.0.
    assert lam[4] == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.01, 10), st.floats(-5, 5), st.one_of(st.just(0.0), st.floats(1e-3, 10))),
        min_size=1,
        max_size=8,
    ),
    st.floats(1e-4, 1.0),
    st.floats(1.0, 50.0),
    st.floats(1.0, 1e3),
)
def test_adaptive_lambda_stays_within_its_bounds(groups, lmbda: float, amplify: float, hat: float) -> None:
    norm = torch.tensor([g[0] for g in groups], dtype=torch.float64)
    cos = torch.tensor([max(-1.0, min(1.0, g[1] / 5)) for g in groups], dtype=torch.float64)
    dnorm = torch.tensor([g[2] for g in groups], dtype=torch.float64)
    xx, dd, xd = norm**2, dnorm**2, cos * norm * dnorm
    lam = adaptive_lambda(xx, xd, dd, lmbda, amplify, hat)
    for i in range(len(groups)):
        if xd[i] >= 0:
            assert lam[i] == pytest.approx(lmbda)
            continue
        lb, ub = float(-xd[i] / norm[i]), float(-dd[i] * norm[i] / xd[i])
        clipped = min(max(amplify * lb, lmbda), lmbda * hat)
        if clipped < ub:
            assert float(lam[i]) == pytest.approx(clipped)
            assert lmbda * (1 - 1e-9) <= float(lam[i]) <= lmbda * hat * (1 + 1e-9)
        else:
            assert float(lam[i]) == pytest.approx((lb + ub) / 2)
            assert lb * (1 - 1e-9) <= float(lam[i]) <= ub * (1 + 1e-9)  # lb <= ub (Cauchy-Schwarz)


def test_half_space_mask_is_exactly_its_condition() -> None:
    hat_dot_x = torch.tensor([-0.1, 0.05, 0.2, 0.0, 0.3])
    xx = torch.tensor([1.0, 1.0, 1.0, 0.0, 2.0])
    assert half_space_mask(hat_dot_x, xx, 0.0).tolist() == [True, False, False, False, False]
    # epsilon 0.1: 0.05 < 0.1 but 0.2 >= 0.1 and 0.3 >= 0.1 * 2; epsilon 0.2: 0.3 < 0.2 * 2.
    assert half_space_mask(hat_dot_x, xx, 0.1).tolist() == [True, True, False, False, False]
    assert half_space_mask(hat_dot_x, xx, 0.2).tolist() == [True, True, False, False, True]


def test_cap_projections_keeps_the_deepest() -> None:
    mask = torch.tensor([True, False, True, True])
    margin = torch.tensor([0.5, -9.0, -0.2, 0.1])
    assert cap_projections(mask, margin, 2).tolist() == [False, False, True, True]
    assert cap_projections(mask, margin, None).tolist() == mask.tolist()
    assert cap_projections(mask, margin, 5).tolist() == mask.tolist()
