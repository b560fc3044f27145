"""SNIP (Lee et al. 2019), unstructured: prune once at initialisation by connection sensitivity.

The sensitivity of weight ``j`` is ``|g_j * w_j|`` (the loss gradient with respect to a mask
``c_j`` at ``c = 1``), summed over one or a few batches and normalised by its sum over every
masked weight; the smallest normalised scores are pruned, globally, before training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from .masks import ElementMasks
from .targets import select_smallest

__all__ = ["snip_scores", "snip_select"]


def snip_scores(
    units: ElementMasks,
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Normalised connection sensitivity ``|g * w| / sum |g * w|`` of every masked weight, ``[S]``.

    The gradients of ``model`` are overwritten (left zeroed).

    Example:
        >>> net = nn.Linear(3, 1, bias=False)
        >>> s = snip_scores(ElementMasks(net), net, [(torch.ones(2, 3), torch.zeros(2, 1))], nn.functional.mse_loss)
        >>> round(float(s.sum()), 6)
        1.0
    """
    model.zero_grad(set_to_none=True)
    seen = 0
    for inputs, targets in batches:
        loss_fn(model(inputs), targets).backward()
        seen += 1
    if not seen:
        raise ValueError("SNIP needs at least one batch")
    grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in units.weights]
    scores = units.per_weight((g * w).abs() for g, w in zip(grads, units.weights))
    model.zero_grad(set_to_none=True)
    total = scores.sum()
    return scores / total if total > 0 else scores


def snip_select(units: ElementMasks, scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Ids of the ``sparsity`` fraction of weights with the smallest normalised scores (global)."""
    return select_smallest(units, scores, sparsity, scope="global")
