"""Self-rectifying's release rules as pure functions of the per-unit statistics (all ``[S]`` tensors).

:func:`relative_length` is ``C_len``; :func:`update_cosine` the radial ``c_t``; :func:`radial_rule`
and :func:`paper_rule` turn the statistics of one counted step into the new streaks and the
units to release. :class:`~decayprune.decay.DecayEngine` owns the state and calls these; the
formulas are stated in :mod:`decayprune.decay.engine`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..config.prune import DecaySettings
from ..structure.kernels import FlatPlan

__all__ = ["paper_rule", "radial_rule", "relative_length", "update_cosine"]


def relative_length(
    grad_norms: torch.Tensor, alive: torch.Tensor, group_of: torch.Tensor, num_groups: int
) -> torch.Tensor:
    """``C_len``: each unit's gradient norm over the mean of the alive units of its group.

    Example:
        >>> relative_length(torch.tensor([1., 3., 5.]), torch.ones(3), torch.tensor([0, 0, 1]), 2).tolist()
        [0.5, 1.5, 1.0]
    """
    device = grad_norms.device
    total = torch.zeros(num_groups, device=device).index_add_(0, group_of, grad_norms * alive)
    count = torch.zeros(num_groups, device=device).index_add_(0, group_of, alive)
    mean = total / count.clamp_min(1)
    return grad_norms / mean[group_of].clamp_min(1e-12)


def update_cosine(plans: Sequence[FlatPlan], snapshots: Sequence[torch.Tensor], num_units: int) -> torch.Tensor:
    """Per unit, the cosine of the optimizer's update ``x* - x`` and the weights ``x`` before it.

    ``snapshots[i]`` is ``torch.cat(plans[i].flat_params())`` taken before the step.
    """
    device = plans[0].index.device if plans else torch.device("cpu")
    dot = torch.zeros(num_units + 1, device=device)
    usq = torch.zeros(num_units + 1, device=device)
    xsq = torch.zeros(num_units + 1, device=device)
    for plan, before in zip(plans, snapshots, strict=True):
        update = torch.cat(plan.flat_params()).float().sub_(before)
        index = plan.index
        dot.index_add_(0, index, update * before)
        xsq.index_add_(0, index, before.square())
        usq.index_add_(0, index, update.square_())
    scale = (usq * xsq)[:num_units].sqrt()
    return torch.where(scale > 0, dot[:num_units] / scale.clamp_min(1e-30), torch.zeros_like(scale))


def _streak(resisting: torch.Tensor, streak: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    grown = torch.where(resisting, streak + 1, torch.zeros_like(streak))
    return torch.where(counted, grown, streak)


def radial_rule(
    state: dict[str, torch.Tensor],
    c_rate: torch.Tensor,
    c_len: torch.Tensor,
    counted: torch.Tensor,
    cfg: DecaySettings,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``sr_criterion="radial"``: running means of ``c_rate`` / ``c_len`` over a window; release above both thresholds.

    Updates ``state["ema_rate"]`` / ``state["ema_len"]`` in place (a running mean over the first
    ``W`` counted steps, then an EMA with weight ``1/W``; ``W`` capped at ``N`` so that a decay
    shorter than the window can still be released). Returns the smoothed ``(c_rate, c_len)``, the
    new streaks and the units to release (only after ``W`` decay steps).
    """
    window = min(cfg.window, cfg.steps)
    n_done = state["done_steps"].float()
    weight = torch.maximum(1.0 / (n_done + 1.0), torch.full_like(n_done, 1.0 / window))
    # torch.where, not a zero weight: a skipped AMP step's inf/NaN statistics must not reach the means.
    zero = torch.zeros_like(weight)
    state["ema_rate"].add_(torch.where(counted, weight * (c_rate - state["ema_rate"]), zero))
    state["ema_len"].add_(torch.where(counted, weight * (c_len - state["ema_len"]), zero))
    c_rate, c_len = state["ema_rate"].clone(), state["ema_len"].clone()
    resisting = (c_rate > cfg.t_rate) & (c_len > cfg.t_len)
    streak = _streak(resisting, state["streak"], counted)
    release = counted & resisting & (state["done_steps"] + 1 >= window)
    return c_rate, c_len, streak, release


def paper_rule(
    streak: torch.Tensor, c_rate: torch.Tensor, c_len: torch.Tensor, counted: torch.Tensor, cfg: DecaySettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sr_criterion="paper"``: release once both conditions held for ``W`` consecutive counted steps.

    Example:
        >>> cfg = DecaySettings(policy="sp+sr", sr_criterion="paper", window=2, t_rate=0.0, t_len=0.0)
        >>> counted = torch.ones(2, dtype=torch.bool)
        >>> streak, release = paper_rule(torch.tensor([1, 0]), torch.ones(2), torch.ones(2), counted, cfg)
        >>> streak.tolist(), release.tolist()
        ([2, 1], [True, False])
    """
    resisting = (c_rate > cfg.t_rate) & (c_len > cfg.t_len)
    new = _streak(resisting, streak, counted)
    return new, counted & resisting & (new >= cfg.window)
