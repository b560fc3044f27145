"""Power iteration with HVPs against the explicit Hessian; the penalty's gradient by finite differences."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.func import functional_call

from decayprune.criteria import spectral_penalty_grads, top_eigenvalue

X = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
Y = torch.arange(16) % 2


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2)).double()


def explicit_hessian(net: nn.Module) -> torch.Tensor:
    names = [n for n, _p in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss_of(vector: torch.Tensor) -> torch.Tensor:
        chunks = vector.split([s.numel() for s in shapes])
        params = {n: c.view(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        return nn.functional.cross_entropy(functional_call(net, params, (X,)), Y)

    return torch.autograd.functional.hessian(loss_of, flat)


def test_power_iteration_finds_the_eigenvalue_of_largest_magnitude() -> None:
    net = tiny()
    eig = torch.linalg.eigvalsh(explicit_hessian(net))
    expected = float(eig[eig.abs().argmax()])
    value, vector = top_eigenvalue(
        lambda: nn.functional.cross_entropy(net(X), Y), list(net.parameters()), iters=500, tol=1e-12,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert abs(value - expected) < 1e-6 * max(1.0, abs(expected))
    assert abs(float(torch.sqrt(sum((v * v).sum() for v in vector))) - 1) < 1e-9


def test_penalty_gradient_matches_finite_differences_of_vHv() -> None:
    net = tiny()
    params = list(net.parameters())
    vector = [
        torch.randn(p.shape, generator=torch.Generator().manual_seed(i), dtype=p.dtype) for i, p in enumerate(params)
    ]

    def quad() -> float:
        loss = nn.functional.cross_entropy(net(X), Y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        hv = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vector, strict=True)), params)
        return float(sum((h * v).sum() for h, v in zip(hv, vector, strict=True)))

    value = spectral_penalty_grads(nn.functional.cross_entropy(net(X), Y), params, vector, strength=2.0)
    assert abs(value - quad()) < 1e-10
    w = params[0]
    analytic = float(w.grad[1, 2])
    eps = 1e-5
    with torch.no_grad():
        w[1, 2] += eps
    up = quad()
    with torch.no_grad():
        w[1, 2] -= 2 * eps
    down = quad()
    assert abs(analytic - 2.0 * (up - down) / (2 * eps)) < 1e-5 * max(1.0, abs(analytic))
