"""RigL (Evci et al. 2020): sparse training with a constant number of active weights.

Layer densities follow Erdős-Rényi-Kernel (:func:`erk_densities`): a layer's density is
proportional to ``sum(shape) / prod(shape)``, scaled so the whole model meets the target, with
layers that would exceed 1 kept dense. Every ``delta_t`` steps until ``t_end`` each layer drops
its ``k`` smallest-``|w|`` active weights and grows the ``k`` inactive ones with the largest dense
gradient ``|dL/dw|`` (read only on those steps, before the mask zeroes it), where
``k = f(t) * active`` and ``f(t) = alpha / 2 * (1 + cos(pi * t / t_end))``. Grown weights start at
exactly 0 (and so do their optimizer states); the active count of every layer never changes.

RigL's drops are immediate by definition (a decaying weight would break the constant count), so
it owns its mask and does not go through the decay engine's ``sp`` / ``sp+sr`` policies.
"""

from __future__ import annotations

import math

import torch

from .masks import ElementMasks

__all__ = ["RigL", "erk_densities"]


def erk_densities(units: ElementMasks, density: float, power: float = 1.0) -> list[float]:
    """Erdős-Rényi-Kernel density of each masked layer, for an overall ``density``.

    Example:
        >>> import torch.nn as nn
        >>> m = ElementMasks(nn.Sequential(nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 2)))
        >>> [round(d, 3) for d in erk_densities(m, 0.1)]
        [0.082, 1.0]
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    sizes = [w.numel() for w in units.weights]
    raw = [(sum(w.shape) / w.numel()) ** power for w in units.weights]
    dense: set[int] = set()
    while True:
        budget = density * sum(sizes) - sum(sizes[i] for i in dense)
        divisor = sum(raw[i] * sizes[i] for i in range(len(sizes)) if i not in dense)
        eps = budget / divisor if divisor > 0 else 0.0
        over = [i for i in range(len(sizes)) if i not in dense and eps * raw[i] > 1.0]
        if not over:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(sizes))]
        dense.add(max(over, key=lambda i: raw[i]))


class RigL:
    """Drop-and-grow sparse training on ``units``.

    Call :meth:`after_backward` after ``loss.backward()`` (before the optimizer step) and
    :meth:`after_step` after it, with the step just done.

    Args:
        units: The element masks (RigL sets them).
        density: Overall fraction of active weights.
        t_end: Last step with a mask update (the paper: 75% of training).
        delta_t: Steps between updates.
        alpha: Initial update fraction.
        distribution: ``"erk"`` or ``"uniform"`` layer densities.
        optimizer: Its per-element state is held at zero with the weights.
        seed: For the random initial masks.

    Example:
        >>> import torch.nn as nn
        >>> net = nn.Linear(20, 10)
        >>> rigl = RigL(ElementMasks(net), density=0.3, t_end=100)
        >>> int((net.weight != 0).sum())
        60
    """

    def __init__(
        self,
        units: ElementMasks,
        *,
        density: float,
        t_end: int,
        delta_t: int = 100,
        alpha: float = 0.3,
        distribution: str = "erk",
        optimizer: torch.optim.Optimizer | None = None,
        seed: int = 0,
    ) -> None:
        if distribution not in ("erk", "uniform"):
            raise ValueError(f"distribution must be 'erk' or 'uniform', got {distribution!r}")
        if delta_t < 1 or t_end < 0 or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"need delta_t >= 1, t_end >= 0 and 0 <= alpha <= 1 (got {delta_t}, {t_end}, {alpha})")
        self.units, self.t_end, self.delta_t, self.alpha, self.optimizer = units, t_end, delta_t, alpha, optimizer
        self.densities = erk_densities(units, density) if distribution == "erk" else [density] * units.num_groups
        self._grads: torch.Tensor | None = None
        g = torch.Generator().manual_seed(seed)
        pruned = torch.ones(units.num_structures, dtype=torch.bool)
        for i, d in enumerate(self.densities):
            span = units.span(i)
            n = span.stop - span.start
            keep = torch.randperm(n, generator=g)[: round(d * n)] + span.start
            pruned[keep] = False
        units.set_mask(pruned)
        units.zero_pruned_(optimizer)

    def update_fraction(self, step: int) -> float:
        """Fraction of each layer's active weights replaced at ``step`` (cosine decay)."""
        return self.alpha / 2 * (1 + math.cos(math.pi * min(step, self.t_end) / self.t_end)) if self.t_end else 0.0

    def is_update_step(self, step: int) -> bool:
        """True every ``delta_t`` steps before ``t_end``."""
        return 0 < step < self.t_end and step % self.delta_t == 0

    def after_backward(self, step: int) -> None:
        """Read the dense gradient if ``step`` is an update step; then zero the inactive gradients."""
        if self.is_update_step(step):
            self._grads = self.units.per_weight(
                w.grad if w.grad is not None else torch.zeros_like(w) for w in self.units.weights
            )
        self.units.zero_pruned_(self.optimizer)

    @torch.no_grad()
    def after_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Hold inactive weights at zero; on an update step drop and grow. Returns (dropped, grown) ids."""
        self.units.zero_pruned_(self.optimizer)
        empty = torch.zeros(0, dtype=torch.long)
        if self._grads is None:
            return empty, empty
        grads, self._grads = self._grads.abs().cpu(), None
        magnitude = self.units.producer_norms().cpu()
        pruned = self.units.pruned.clone()
        fraction = self.update_fraction(step)
        dropped, grown = [], []
        for i in range(self.units.num_groups):
            span = self.units.span(i)
            ids = torch.arange(span.start, span.stop)
            active = ids[~pruned[ids]]
            k = int(fraction * active.numel())
            if k == 0 or active.numel() == ids.numel():  # nothing to replace, or a dense layer
                continue
            drop = active[torch.argsort(magnitude[active], stable=True)[:k]]
            candidates = ids[pruned[ids]]
            candidates = torch.cat([candidates, drop])  # a dropped weight may be grown again (from 0)
            grow = candidates[torch.argsort(grads[candidates], descending=True, stable=True)[:k]]
            pruned[drop] = True
            pruned[grow] = False
            dropped.append(drop)
            grown.append(grow)
        if not grown:
            return empty, empty
        drop_ids, grow_ids = torch.cat(dropped), torch.cat(grown)
        self.units.set_mask(pruned)
        self._zero_(grow_ids)
        self.units.zero_pruned_(self.optimizer)
        return drop_ids, grow_ids

    def _zero_(self, ids: torch.Tensor) -> None:
        """Set ``ids``' weights and optimizer states to exactly 0 (grown weights start there)."""
        chosen = torch.zeros(self.units.num_structures, dtype=torch.bool)
        chosen[ids] = True
        for w, where in zip(self.units.weights, self.units.unflatten(chosen)):
            if not where.any():
                continue
            where = where.to(w.device)
            w.data[where] = 0
            state = self.optimizer.state.get(w, {}) if self.optimizer is not None else {}
            for value in state.values():
                if isinstance(value, torch.Tensor) and value.shape == w.shape:
                    value[where] = 0
