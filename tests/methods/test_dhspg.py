"""The DHSPG optimizer: base directions, partition, half-space projection, zero groups, resume."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from decayprune.methods.dhspg import DHSPG
from decayprune.methods.dhspg_math import adaptive_lambda
from decayprune.structure import StructureSet

X = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
Y = torch.randn(16, 2, generator=torch.Generator().manual_seed(2))


def net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))


def backward(model: nn.Module) -> None:
    model.zero_grad()
    F.mse_loss(model(X), Y).backward()


def group_tensors(model: nn.Sequential) -> torch.Tensor:
    """Each structure's producer slices of the first layer: [6, 5] (weight row + bias)."""
    return torch.cat([model[0].weight.detach(), model[0].bias.detach().unsqueeze(1)], dim=1)


def group_grads(model: nn.Sequential) -> torch.Tensor:
    return torch.cat([model[0].weight.grad, model[0].bias.grad.unsqueeze(1)], dim=1)


@pytest.mark.parametrize(
    "variant,reference",
    [
        ("sgd", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2)),
        ("adam", lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-2)),
        ("adamw", lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=1e-2)),
    ],
)
def test_base_direction_matches_torch(variant: str, reference) -> None:
    a, b = net(), net()
    lr = 0.1 if variant == "sgd" else 0.01
    ours = DHSPG(a.parameters(), None, variant=variant, lr=lr, momentum=0.9, weight_decay=1e-2)
    theirs = reference(b.parameters())
    for _ in range(4):
        for model, opt in ((a, ours), (b, theirs)):
            backward(model)
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_partition_picks_the_groups_the_formula_says() -> None:
    model = net()
    s = StructureSet(model, X[:1])
    assert s.num_structures == 6
    opt = DHSPG(
        model.parameters(), s, lr=0.01, target_group_sparsity=0.5, partition_step=0, half_space_project_steps=100
    )
    backward(model)
    x, d = group_tensors(model).double(), group_grads(model).double()
    opt.step()
    cos = (x * d).sum(1) / (x.norm(dim=1) * d.norm(dim=1))
    inv = 1.0 / (x.norm(dim=1) / x.shape[1] + 1e-6)
    scores = 0.5 * cos / cos.norm() + 0.5 * inv / inv.norm()
    want = torch.zeros(6, dtype=torch.bool)
    want[torch.topk(scores, 3).indices] = True
    assert opt.partitioned and opt.redundant.tolist() == want.tolist()
    torch.testing.assert_close(opt.scores.double(), scores, rtol=1e-5, atol=1e-6)


def test_no_partition_before_partition_step() -> None:
    model = net()
    opt = DHSPG(model.parameters(), StructureSet(model, X[:1]), lr=0.01, partition_step=2, half_space_project_steps=2)
    for expected in (False, False, True):
        backward(model)
        opt.step()
        assert opt.partitioned is expected


def test_half_space_projection_zeroes_exactly_the_groups_meeting_its_condition() -> None:
    model = net(3)
    s = StructureSet(model, X[:1])
    lr, eps = 0.5, 0.3
    opt = DHSPG(
        model.parameters(),
        s,
        lr=lr,
        lmbda=1.0,
        lmbda_amplify=2.0,
        hat_lmbda_coeff=10.0,
        epsilon=eps,
        target_group_sparsity=0.5,
        partition_step=0,
        half_space_project_steps=0,
    )
    backward(model)
    x, d = group_tensors(model).double(), group_grads(model).double()
    opt.step()
    red = opt.redundant | opt.pending  # redundant at this step (projected ones left the set)
    xx, xd, dd = (x * x).sum(1), (x * d).sum(1), (d * d).sum(1)
    lam = adaptive_lambda(xx, xd, dd, 1.0, 2.0, 10.0)
    hat = x - lr * d - torch.where(red, lr * lam / xx.sqrt(), torch.zeros_like(xx)).unsqueeze(1) * x
    hit = red & ((hat * x).sum(1) < eps * xx)
    assert hit.any() and (red & ~hit).any(), "the case must project some redundant groups and keep others"
    after = group_tensors(model).double()
    assert opt.pending.tolist() == hit.tolist()
    assert (after[hit] == 0).all()
    torch.testing.assert_close(after[~hit], hat[~hit], rtol=1e-5, atol=1e-6)
    assert opt.group_sparsity() == pytest.approx(int(hit.sum()) / 6)
    assert opt.take_pending().tolist() == hit.nonzero().flatten().tolist()
    assert not opt.pending.any()


def test_report_only_and_projection_cap() -> None:
    model = net(3)
    opt = DHSPG(
        model.parameters(),
        StructureSet(model, X[:1]),
        lr=0.5,
        lmbda=1.0,
        epsilon=0.3,
        target_group_sparsity=0.5,
        partition_step=0,
        half_space_project_steps=0,
        project=False,
        max_projections_per_step=1,
    )
    backward(model)
    opt.step()
    assert int(opt.pending.sum()) == 1  # capped, and reported without zeroing
    assert (group_tensors(model).norm(dim=1) > 0).all()


def test_zero_groups_stay_zero() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))  # tanh: a zero channel still gets gradient
    with torch.no_grad():
        model[0].weight[2].zero_()
        model[0].bias[2].zero_()
    opt = DHSPG(
        model.parameters(),
        StructureSet(model, X[:1]),
        lr=0.1,
        momentum=0.9,
        partition_step=100,
        half_space_project_steps=100,
    )
    for _ in range(3):
        backward(model)
        assert group_grads(model)[2].abs().sum() > 0
        opt.step()
    assert group_tensors(model)[2].abs().sum() == 0
    assert group_tensors(model)[1].abs().sum() > 0


@pytest.mark.parametrize("variant", ["sgd", "adamw"])
def test_state_dict_resume_is_exact(variant: str) -> None:
    def make(model: nn.Module) -> DHSPG:
        return DHSPG(
            model.parameters(),
            StructureSet(model, X[:1]),
            variant=variant,
            lr=0.05,
            momentum=0.9,
            lmbda=0.05,
            target_group_sparsity=0.5,
            partition_step=1,
            half_space_project_steps=3,
        )

    a = net()
    opt_a = make(a)
    for _ in range(3):
        backward(a)
        opt_a.step()
    saved_model, saved_opt = copy.deepcopy(a.state_dict()), copy.deepcopy(opt_a.state_dict())
    for _ in range(3):
        backward(a)
        opt_a.step()
    b = net(7)
    b.load_state_dict(saved_model)
    opt_b = make(b)
    opt_b.load_state_dict(saved_opt)
    assert opt_b.partitioned and opt_b.num_steps == 3
    for _ in range(3):
        backward(b)
        opt_b.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)
    assert opt_a.redundant.tolist() == opt_b.redundant.tolist()


def test_bad_arguments_are_refused() -> None:
    params = list(net().parameters())
    with pytest.raises(ValueError, match="variant"):
        DHSPG(params, None, variant="rmsprop", lr=0.1)
    with pytest.raises(ValueError, match="epsilon"):
        DHSPG(params, None, lr=0.1, epsilon=1.0)
    with pytest.raises(ValueError, match="target_group_sparsity"):
        DHSPG(params, None, lr=0.1, target_group_sparsity=1.0)
    with pytest.raises(ValueError, match="partition_step"):
        DHSPG(params, None, lr=0.1, partition_step=-1)
    with pytest.raises(ValueError, match="lr"):
        DHSPG(params, None, lr=0.0)
