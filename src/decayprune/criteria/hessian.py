"""The Hessian's spectral radius by power iteration with Hessian-vector products.

``top_eigenvalue`` returns the eigenvalue of largest magnitude of the loss Hessian over ``params``
and its unit eigenvector; ``spectral_penalty_grads`` adds the gradient of ``strength * v^T H v``
with ``v`` held fixed (the derivative of that eigenvalue, by the Hellmann-Feynman theorem) to
``.grad``: the penalty that keeps the Hessian's spectral radius small while training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["spectral_penalty_grads", "top_eigenvalue"]


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over the pairs of ``(x * y).sum()`` (one inner product across several tensors)."""
    return torch.stack([(x * y).sum() for x, y in zip(a, b, strict=True)]).sum()


def _hvp(
    loss: torch.Tensor, params: Sequence[torch.Tensor], vector: Sequence[torch.Tensor], create_graph: bool = False
) -> tuple[torch.Tensor, ...]:
    grads = torch.autograd.grad(loss, params, create_graph=True)
    return torch.autograd.grad(_dot(grads, vector), params, create_graph=create_graph)


def top_eigenvalue(
    loss_of: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    iters: int = 20,
    tol: float = 1e-6,
    start: Sequence[torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[float, list[torch.Tensor]]:
    """Power iteration ``v <- Hv / ||Hv||``: ``(eigenvalue, unit eigenvector)`` of largest magnitude.

    ``loss_of()`` recomputes the loss (one forward per iteration); ``start`` warm-starts the vector.

    Example:
        >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> value, _v = top_eigenvalue(lambda: (torch.tensor([3.0, 0.5]) * w**2).sum(), [w])   # H = diag(6, 1)
        >>> round(value, 4)
        6.0
    """
    if start is None:
        vector = [torch.randn(p.shape, generator=generator).to(p) for p in params]
    else:
        vector = [v.detach().clone() for v in start]
    norm = torch.sqrt(_dot(vector, vector))
    vector = [v / norm for v in vector]
    value = 0.0
    for _ in range(iters):
        hv = _hvp(loss_of(), params, vector)
        new_value = float(_dot(hv, vector))
        norm = torch.sqrt(_dot(hv, hv))
        if float(norm) == 0:
            return 0.0, vector
        vector = [h.detach() / norm for h in hv]
        if abs(new_value - value) <= tol * max(abs(new_value), 1e-12):
            value = new_value
            break
        value = new_value
    return value, vector


def spectral_penalty_grads(
    loss: torch.Tensor, params: Sequence[torch.Tensor], vector: Sequence[torch.Tensor], strength: float
) -> float:
    """Add ``strength * d(v^T H v)/d theta`` (``v`` fixed) to each parameter's ``.grad``; returns ``v^T H v``.

    Example:
        >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> value = spectral_penalty_grads((w**4).sum(), [w], [torch.tensor([1.0, 0.0])], strength=1.0)
        >>> value, w.grad.tolist()    # v^T H v = 12 w0^2; its gradient 24 w0
        (12.0, [24.0, 0.0])
    """
    hv = _hvp(loss, params, vector, create_graph=True)
    quad = _dot(hv, vector)
    grads = torch.autograd.grad(quad, params, allow_unused=True)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            if g is None:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.add_(g, alpha=strength)
    return float(quad)
