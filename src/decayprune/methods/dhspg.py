"""DHSPG, OTOv2's optimizer (Chen et al., ICLR 2023), over decayprune's structures.

A *group* is one structure's producer slices (the zero-invariant group of OTOv2: conv/linear
out-channel row, its bias, the following norm layer's affine pair). Each step:

1. the base optimizer's search direction ``d`` per parameter (SGD with momentum, Adam or
   AdamW; weight decay added to the gradient, or decoupled for AdamW, as OTOv2 does);
2. at ``partition_step`` the groups are scored ``0.5 * normalize(cos(-x, -d)) +
   0.5 * normalize(1 / avg-norm)`` and split into *redundant* and kept groups (top-K by group
   sparsity, or a ``partitioner`` callback, e.g. a MACs budget);
3. every group takes ``x - lr * d``; a redundant group additionally takes the group-lasso
   half-step ``- lr * lambda_g * x / ||x||`` with the adaptive ``lambda_g``
   (:func:`~decayprune.methods.dhspg_math.adaptive_lambda`);
4. after ``half_space_project_steps``, a redundant group whose trial point lands in the
   half-space ``<x_hat, x> < epsilon ||x||^2`` is projected to zero (``project=True``) or,
   with ``project=False``, only *reported* in :attr:`DHSPG.pending` so that a caller (DPM's
   smooth pruning) can decay it instead; at most ``max_projections_per_step`` per step;
5. groups that are exactly zero stay zero (``fixed_zero_groups``).

Groups leaving the redundant set (projected or reported) appear in :attr:`DHSPG.pending`
until :meth:`DHSPG.take_pending` drains it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn

from ..structure import PRODUCER, StructureSet
from .dhspg_math import (
    adaptive_lambda,
    cap_projections,
    cosine_x_d,
    half_space_mask,
    redundancy_scores,
    top_k_redundant,
)

__all__ = ["DHSPG", "VARIANT_DEFAULTS"]

VARIANT_DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"lmbda": 1e-3, "lmbda_amplify": 2.0, "hat_lmbda_coeff": 10.0, "momentum": 0.0, "second_momentum": 0.0},
    "adam": {"lmbda": 1e-2, "lmbda_amplify": 20.0, "hat_lmbda_coeff": 1e3, "momentum": 0.9, "second_momentum": 0.999},
    "adamw": {"lmbda": 1e-2, "lmbda_amplify": 20.0, "hat_lmbda_coeff": 1e3, "momentum": 0.9, "second_momentum": 0.999},
}
"""OTOv2's per-variant defaults (regularisation and moments)."""

Partitioner = Callable[[torch.Tensor], torch.Tensor]


class DHSPG(torch.optim.Optimizer):
    """Dual Half-Space Projected Gradient over a :class:`~decayprune.structure.StructureSet`.

    Args:
        params: The parameters to train (every model parameter, usually).
        structures: The groups (``None``: a plain SGD/Adam/AdamW with OTOv2's direction).
        variant: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        lr: Learning rate.
        momentum: SGD momentum / Adam beta1 (default per variant).
        second_momentum: Adam beta2 (default 0.999).
        dampening: SGD dampening.
        weight_decay: L2 added to the gradient (sgd, adam) or decoupled (adamw).
        eps: Adam's denominator guard.
        lmbda, lmbda_amplify, hat_lmbda_coeff: Group-lasso strength and the adaptive bounds
            (defaults: sgd 1e-3 / 2 / 10; adam, adamw 1e-2 / 20 / 1e3).
        epsilon: Half-space projection threshold in [0, 1).
        partition_step: Optimizer steps taken before the partition (0: at the first step).
        half_space_project_steps: Optimizer steps before projections may happen.
        target_group_sparsity: Fraction of groups marked redundant when no ``partitioner`` is given.
        tolerance_group_sparsity: Added to the target when computing K (as OTOv2).
        group_divisible: Groups kept per layer are a multiple of this (group-sparsity partition).
        partitioner: ``scores -> bool mask`` choosing the redundant groups (replaces top-K).
        project: Zero groups that meet the half-space condition (False: only report them).
        max_projections_per_step: Cap on groups projected (or reported) per step (None: no cap).
        fixed_zero_groups: Groups that are exactly zero stay zero.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
        >>> s = StructureSet(net, torch.randn(1, 4))
        >>> opt = DHSPG(net.parameters(), s, lr=0.1, target_group_sparsity=0.5)
        >>> net(torch.randn(8, 4)).pow(2).mean().backward(); opt.step()
        >>> int(opt.redundant.sum()), opt.partitioned
        (3, True)
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        structures: StructureSet | None,
        *,
        variant: str = "sgd",
        lr: float,
        momentum: float | None = None,
        second_momentum: float | None = None,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        eps: float = 1e-8,
        lmbda: float | None = None,
        lmbda_amplify: float | None = None,
        hat_lmbda_coeff: float | None = None,
        epsilon: float = 0.0,
        partition_step: int = 0,
        half_space_project_steps: int = 0,
        target_group_sparsity: float = 0.5,
        tolerance_group_sparsity: float = 0.0,
        group_divisible: int = 1,
        partitioner: Partitioner | None = None,
        project: bool = True,
        max_projections_per_step: int | None = None,
        fixed_zero_groups: bool = True,
    ) -> None:
        if variant not in VARIANT_DEFAULTS:
            raise ValueError(f"variant must be one of {sorted(VARIANT_DEFAULTS)}, got {variant!r}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0 <= epsilon < 1:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        if partition_step < 0 or half_space_project_steps < 0:
            raise ValueError(
                "partition_step and half_space_project_steps must be >= 0, got "
                f"{partition_step} and {half_space_project_steps}"
            )
        if not 0 < target_group_sparsity < 1:
            raise ValueError(f"target_group_sparsity must be in (0, 1), got {target_group_sparsity}")
        if group_divisible < 1:
            raise ValueError(f"group_divisible must be >= 1, got {group_divisible}")
        if max_projections_per_step is not None and max_projections_per_step < 1:
            raise ValueError(f"max_projections_per_step must be >= 1 or None, got {max_projections_per_step}")
        d = VARIANT_DEFAULTS[variant]
        defaults = dict(
            lr=lr,
            variant=variant,
            momentum=d["momentum"] if momentum is None else momentum,
            second_momentum=d["second_momentum"] if second_momentum is None else second_momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            eps=eps,
            lmbda=d["lmbda"] if lmbda is None else lmbda,
            lmbda_amplify=d["lmbda_amplify"] if lmbda_amplify is None else lmbda_amplify,
            hat_lmbda_coeff=d["hat_lmbda_coeff"] if hat_lmbda_coeff is None else hat_lmbda_coeff,
            epsilon=epsilon,
        )
        super().__init__(params, defaults)
        self.structures = structures
        self.partition_step = partition_step
        self.half_space_project_steps = half_space_project_steps
        self.target_group_sparsity = target_group_sparsity
        self.tolerance_group_sparsity = tolerance_group_sparsity
        self.group_divisible = group_divisible
        self.partitioner = partitioner
        self.project = project
        self.max_projections_per_step = max_projections_per_step
        self.fixed_zero_groups = fixed_zero_groups
        self.num_steps = 0
        self.partitioned = False
        n = structures.num_structures if structures is not None else 0
        self.redundant = torch.zeros(n, dtype=torch.bool)
        self.pending = torch.zeros(n, dtype=torch.bool)
        self.scores = torch.zeros(n)
        self.cosines = torch.zeros(n)
        self.last_lambda = torch.zeros(n)

    # ------------------------------------------------------------------ public helpers
    @property
    def tracking(self) -> bool:
        """True while the optimizer works over groups (not after compaction)."""
        return self.structures is not None and not self.structures.stale and self.structures.num_structures > 0

    def detach_structures(self) -> None:
        """Forget the groups (after compaction): from now on a plain optimizer with the same state."""
        self.structures = None
        self.redundant = torch.zeros(0, dtype=torch.bool)
        self.pending = torch.zeros(0, dtype=torch.bool)
        self.scores = torch.zeros(0)
        self.cosines = torch.zeros(0)
        self.last_lambda = torch.zeros(0)

    def _groups(self) -> StructureSet:
        if self.structures is None:
            raise RuntimeError("DHSPG has no structures (detached after compaction)")
        return self.structures

    def take_pending(self) -> torch.Tensor:
        """Ids of groups that left the redundant set by projection (or report) since the last call."""
        ids = self.pending.nonzero().flatten()
        self.pending.zero_()
        return ids

    def group_sparsity(self) -> float:
        """Fraction of groups whose producer slices are exactly zero."""
        if not self.tracking:
            return 0.0
        return float((self._groups().producer_norms() == 0).float().mean())

    # ------------------------------------------------------------------ the step
    def _direction(self, p: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        """The base optimizer's search direction ``d`` for ``p`` (its state updated)."""
        assert p.grad is not None
        grad = p.grad.detach()
        variant, wd = group["variant"], group["weight_decay"]
        if wd and variant != "adamw":
            grad = grad.add(p.detach(), alpha=wd)
        state = self.state[p]
        beta1 = group["momentum"]
        if variant == "sgd":
            if beta1 <= 0:
                return grad
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.clone()
            else:
                buf.mul_(beta1).add_(grad, alpha=1.0 - group["dampening"])
            return buf
        beta2 = group["second_momentum"]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] = 0
        state["step"] = int(state["step"]) + 1
        t = state["step"]
        state["exp_avg"].mul_(beta1).add_(grad, alpha=1.0 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        m_hat = state["exp_avg"] / (1.0 - beta1**t)
        v_hat = state["exp_avg_sq"] / (1.0 - beta2**t)
        return m_hat / (v_hat.sqrt() + group["eps"])

    def _group_reduce(self, pairs: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]) -> torch.Tensor:
        """``sum <a, b>`` over each group's producer slices, for ``(a, b) = pairs(param)``; CPU ``[S]``."""
        s = self.structures
        assert s is not None
        out = torch.zeros(s.num_structures, dtype=torch.float64)
        for _layer, sl, ids in s.parameter_slices(PRODUCER):
            ab = pairs(sl.param)
            if ab is None:
                continue
            a, b = ab
            pos = sl.positions.to(a.device)
            va = a.detach().movedim(sl.dim, 0).index_select(0, pos).reshape(pos.numel(), -1)
            vb = b.detach().movedim(sl.dim, 0).index_select(0, pos).reshape(pos.numel(), -1)
            out.index_add_(0, ids, (va * vb).sum(1).double().cpu())
        return out

    def _partition(self, xx: torch.Tensor, xd: torch.Tensor, dd: torch.Tensor) -> None:
        s = self.structures
        assert s is not None
        self.scores = self.group_scores(xx, xd, dd)
        if self.partitioner is not None:
            mask = torch.as_tensor(self.partitioner(self.scores.clone()), dtype=torch.bool).cpu()
            if mask.shape != self.redundant.shape:
                raise ValueError(
                    f"partitioner returned a mask of shape {tuple(mask.shape)}, expected ({s.num_structures},)"
                )
        else:
            k = int(s.num_structures * min(self.target_group_sparsity + self.tolerance_group_sparsity, 0.999))
            mask = top_k_redundant(self.scores, k, s.layer_of, self.group_divisible)
        self.redundant = mask & (xx > 0)
        self.partitioned = True

    def group_scores(self, xx: torch.Tensor, xd: torch.Tensor, dd: torch.Tensor) -> torch.Tensor:
        """OTOv2's redundancy score of every group from its aggregates (higher: more redundant)."""
        s = self.structures
        assert s is not None
        sizes = s.slice_counts(include_consumers=False).double().clamp_min(1)
        return redundancy_scores(cosine_x_d(xx, xd, dd), xx.sqrt() / sizes).float()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One DHSPG step (see the module docstring)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.num_steps += 1
        directions: dict[torch.Tensor, tuple[torch.Tensor, dict[str, Any]]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    directions[p] = (self._direction(p, group), group)
        if not self.tracking:
            self._base_update(directions)
            return loss

        def xd_pair(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
            return (p, directions[p][0]) if p in directions else None

        def dd_pair(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
            return (directions[p][0], directions[p][0]) if p in directions else None

        xx = self._group_reduce(lambda p: (p, p))
        xd = self._group_reduce(xd_pair)
        dd = self._group_reduce(dd_pair)
        if not self.partitioned and self.num_steps > self.partition_step:
            self._partition(xx, xd, dd)
        if self.partitioned:
            self.scores = self.group_scores(xx, xd, dd)
            self.cosines = cosine_x_d(xx, xd, dd).float()
        group0 = self.param_groups[0]
        active = self.redundant & (xx > 0)
        old: dict[torch.Tensor, torch.Tensor] = {}
        if active.any():
            old = {sl.param: sl.param.detach().clone() for _l, sl, _i in self._groups().parameter_slices(PRODUCER)}
            lam = adaptive_lambda(xx, xd, dd, group0["lmbda"], group0["lmbda_amplify"], group0["hat_lmbda_coeff"])
            self.last_lambda = torch.where(active, lam, torch.zeros_like(lam)).float()
        self._base_update(directions)
        if not active.any():
            self._hold_zero_groups(xx)
            return loss
        coef = torch.where(active, self.last_lambda.double() / xx.sqrt().clamp_min(1e-30), torch.zeros_like(xx))
        lr_of = {p: g["lr"] for g in self.param_groups for p in g["params"]}
        for param, factor in self._groups().broadcast(coef.float(), role=PRODUCER, fill=0.0):
            param.data.add_(old[param] * factor.to(param.dtype), alpha=-lr_of.get(param, group0["lr"]))
        if self.num_steps > self.half_space_project_steps:
            self._half_space(xx, active, old, group0["epsilon"])
        self._hold_zero_groups(xx)
        return loss

    def _base_update(self, directions: dict[torch.Tensor, tuple[torch.Tensor, dict[str, Any]]]) -> None:
        for p, (d, group) in directions.items():
            if group["variant"] == "adamw" and group["weight_decay"]:
                p.mul_(1.0 - group["lr"] * group["weight_decay"])
            p.add_(d, alpha=-group["lr"])

    def _half_space(
        self, xx: torch.Tensor, active: torch.Tensor, old: dict[torch.Tensor, torch.Tensor], epsilon: float
    ) -> None:
        hat_dot_x = self._group_reduce(lambda p: (p, old[p]) if p in old else None)
        hit = half_space_mask(hat_dot_x, xx, epsilon) & active
        hit = cap_projections(hit, hat_dot_x / xx.clamp_min(1e-30), self.max_projections_per_step)
        if not hit.any():
            return
        self.redundant &= ~hit
        self.pending |= hit
        if self.project:
            self._zero_groups(hit)

    def _zero_groups(self, mask: torch.Tensor) -> None:
        keep = (~mask).float()
        for param, factor in self._groups().broadcast(keep, role=PRODUCER, fill=1.0):
            param.data.mul_(factor.to(param.dtype))
            for value in self.state.get(param, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    value.mul_(factor.to(value.dtype))

    def _hold_zero_groups(self, xx: torch.Tensor) -> None:
        if self.fixed_zero_groups:
            zero = xx == 0
            if zero.any():
                self._zero_groups(zero)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state plus DHSPG's partition (``"dhspg"``)."""
        out = super().state_dict()
        out["dhspg"] = {
            "num_steps": self.num_steps,
            "partitioned": self.partitioned,
            "redundant": self.redundant.clone(),
            "pending": self.pending.clone(),
            "scores": self.scores.clone(),
        }
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (the partition included)."""
        state_dict = dict(state_dict)
        extra = state_dict.pop("dhspg", None)
        super().load_state_dict(state_dict)
        if extra is None:
            return
        self.num_steps = int(extra["num_steps"])
        self.partitioned = bool(extra["partitioned"])
        n = self.redundant.numel()
        for key in ("redundant", "pending", "scores"):
            value = torch.as_tensor(extra[key]).cpu()
            if value.numel() != n:
                raise ValueError(f"DHSPG state has {value.numel()} groups, this optimizer {n}")
            setattr(self, key, value.bool() if key != "scores" else value.float())
