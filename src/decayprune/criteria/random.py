"""Uniformly random scores: the control every criterion must beat."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from .base import Criterion, register_criterion

if TYPE_CHECKING:
    from .view import ScoringView

__all__ = ["RandomScores"]


@register_criterion("random")
class RandomScores(Criterion):
    """Uniform random scores from a seeded generator (independent of the training seed)."""

    paper = "the standard control, e.g. Liu et al., Rethinking the Value of Network Pruning, ICLR 2019"

    class Options(BaseModel):
        """Options of :class:`RandomScores`."""

        model_config = ConfigDict(extra="forbid")
        seed: int = Field(0, ge=0, description="seed of the scores")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.generator = torch.Generator().manual_seed(self.options.seed)

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        return torch.rand(ctx.structures.num_structures, generator=self.generator)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])
