"""Train and prune with a Hessian spectral-radius penalty (the seed's "Hessian spectral radius" row).

Every ``every`` steps the top eigenvalue ``lambda_max`` of the loss Hessian (over the prunable
units' parameters) is estimated by power iteration with Hessian-vector products on a calibration
batch, warm-started from the last eigenvector, and ``strength * d(v^T H v)/d theta`` with ``v``
fixed (the gradient of ``strength * lambda_max``) is added to the training gradient; a flatter
loss makes removing neurons cheaper. Neurons (channel groups) are pruned during training by the
criterion at the selection points, as ``iterative`` does (default criterion ``l1_filter``: the
magnitude rule). The passes run in eval mode (BN statistics are not updated by the extra forwards).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from ..criteria.hessian import spectral_penalty_grads, top_eigenvalue
from ..criteria.passes import eval_mode
from ..errors import UserError
from .base import register_method
from .iterative import IterativeMethod, RankingOptions

if TYPE_CHECKING:
    from .context import PruneContext

__all__ = ["SpectralRadius"]


@register_method("spectral_radius")
class SpectralRadius(IterativeMethod):
    """Penalise the Hessian's top eigenvalue every k steps while pruning neurons during training.

    Example:
        >>> SpectralRadius.Options(every=5).strength
        0.001
    """

    default_criterion = "l1_filter"

    class Options(RankingOptions):
        """Options of :class:`SpectralRadius`."""

        every: int = Field(10, ge=1, description="steps between eigenvalue estimates (and penalty steps)")
        strength: float = Field(1e-3, ge=0, description="weight of lambda_max in the loss")
        power_iters: int = Field(10, ge=1, description="power iterations per estimate")
        seed: int = Field(0, ge=0, description="seed of the first power-iteration vector")

    def __init__(self, criterion: Any = None, **options: Any) -> None:
        super().__init__(criterion, **options)
        self._vector: list[torch.Tensor] | None = None
        self._calls = 0
        self.eigenvalues: list[tuple[int, float]] = []

    def setup(self, ctx: "PruneContext") -> None:
        super().setup(ctx)
        if ctx.calibration_data is None:
            raise UserError("method 'spectral_radius' estimates the Hessian on calibration_data; pass some batches")

    def _params(self, ctx: "PruneContext") -> list[torch.Tensor]:
        s = ctx.structures
        return [p for p in dict.fromkeys(sl.param for _l, sl, _i in s.parameter_slices(None)) if p.requires_grad]

    def after_backward(self, ctx: "PruneContext") -> None:
        if ctx.step % self.options.every != 0 or not ctx.schedule.in_pruning_phase(ctx.step):
            return
        batches = list(ctx.calibration_batches())
        inputs, labels = batches[self._calls % len(batches)]
        self._calls += 1
        params = self._params(ctx)
        if self._vector is not None and [v.shape for v in self._vector] != [p.shape for p in params]:
            self._vector = None  # the model was compacted
        generator = torch.Generator().manual_seed(self.options.seed + self._calls)
        with eval_mode(ctx.model):
            value, vector = top_eigenvalue(
                lambda: ctx.loss_fn(ctx.model(inputs), labels),
                params,
                iters=self.options.power_iters,
                start=self._vector,
                generator=generator,
            )
            self._vector = vector
            if self.options.strength > 0:
                spectral_penalty_grads(ctx.loss_fn(ctx.model(inputs), labels), params, vector, self.options.strength)
        self.eigenvalues.append((ctx.step, value))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "calls": self._calls, "eigenvalues": [list(e) for e in self.eigenvalues]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._calls = int(state.get("calls", 0))
        self.eigenvalues = [(int(s), float(v)) for s, v in state.get("eigenvalues", [])]
