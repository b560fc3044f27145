"""SCL: trainable mask scores learn which connections to keep, with no hand-set criterion.

Each masked weight ``w`` gets a score ``m`` (a new parameter, initialised to ``init``); the layer
computes with ``w * step(m)`` (``step(m) = 1`` where ``m > 0``). ``step`` has an identity
straight-through gradient, so ``dL/dm = dL/d(w step(m)) * w``. After each backward
:meth:`SCL.after_backward` normalises the score gradients per output feature (each row divided by
its RMS, so every feature's connections compete on the same scale) and adds the gradient of the
penalty ``penalty * sum(step(m))`` on the number of active connections, which through the identity
estimator is ``penalty`` for every score. Scores that fall to 0 or below switch their connection off.

:meth:`SCL.commit` ends the search: it removes the scores (the layers compute with the dense weight
again) and returns the ids of the connections that are off, to hand to a
:class:`~decayprune.decay.DecayEngine` on :class:`ElementMasks` (``oneshot`` cuts them, ``sp``
decays them to exactly zero in N steps while training continues).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from .masks import ElementMasks

__all__ = ["SCL", "binary_step"]


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, scores: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (scores > 0).to(scores.dtype)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad  # identity straight-through estimator


def binary_step(scores: torch.Tensor) -> torch.Tensor:
    """``1`` where ``scores > 0`` else ``0``, with an identity gradient.

    Example:
        >>> m = torch.tensor([-1.0, 0.5], requires_grad=True)
        >>> binary_step(m).tolist(), torch.autograd.grad(binary_step(m).sum() * 3, m)[0].tolist()
        ([0.0, 1.0], [3.0, 3.0])
    """
    return _Step.apply(scores)


class _Masked(nn.Module):
    def __init__(self, scores: nn.Parameter) -> None:
        super().__init__()
        self.scores = scores

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * binary_step(self.scores)


class SCL:
    """Trainable connection masks over the layers of ``units``.

    Args:
        units: The element masks whose layers get scores.
        penalty: Weight of the connection-count penalty (its gradient on every score).
        init: Initial score (> 0: every connection starts on).
        normalize: Per-feature RMS normalisation of the score gradients.

    The scores are registered on the layers (``model.parameters()`` includes them, as does the
    state dict, until :meth:`commit`); :meth:`parameters` lists them, e.g. for their own group.

    Example:
        >>> net = nn.Linear(4, 2)
        >>> scl = SCL(ElementMasks(net), penalty=0.1)
        >>> scl.active(), len(scl.parameters())
        (8, 1)
    """

    def __init__(
        self, units: ElementMasks, *, penalty: float = 1e-3, init: float = 1.0, normalize: bool = True
    ) -> None:
        if penalty < 0:
            raise ValueError(f"penalty must be >= 0, got {penalty}")
        if init <= 0:
            raise ValueError(f"init must be > 0 (connections start on), got {init}")
        self.units, self.penalty, self.normalize = units, penalty, normalize
        self.scores = [nn.Parameter(torch.full_like(w.detach(), init)) for w in units.weights]
        for module, scores in zip(units.modules, self.scores):
            parametrize.register_parametrization(module, "weight", _Masked(scores), unsafe=True)

    def parameters(self) -> list[nn.Parameter]:
        """The mask scores."""
        return list(self.scores)

    def active(self) -> int:
        """Connections on (``step(m) = 1``)."""
        return int(sum(int((s > 0).sum()) for s in self.scores))

    def off(self) -> torch.Tensor:
        """``[S]`` bool: connections whose score is ``<= 0``."""
        return self.units.per_weight(s <= 0 for s in self.scores).bool()

    @torch.no_grad()
    def after_backward(self) -> None:
        """Normalise the score gradients per output feature, then add the penalty's gradient."""
        for s in self.scores:
            if s.grad is None:
                s.grad = torch.zeros_like(s)
            if self.normalize:
                rows = s.grad.reshape(s.shape[0], -1)
                rms = rows.square().mean(1, keepdim=True).sqrt()
                rows.div_(torch.where(rms > 0, rms, torch.ones_like(rms)))
            s.grad.add_(self.penalty)

    @torch.no_grad()
    def commit(self) -> torch.Tensor:
        """Remove the scores (layers use the dense weights again); return the ids of the connections off."""
        off = self.off()
        for module in self.units.modules:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        return off.nonzero().flatten().cpu()
