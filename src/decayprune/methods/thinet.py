"""ThiNet (Luo et al., ICCV 2017) as a method: greedy selection, then least-squares reconstruction.

The ``thinet`` criterion orders every layer's channels by the greedy reconstruction error of the
next layer; this method ranks by it like ``iterative`` and, at each selection, rescales the kept
input channels of the next layers by ThiNet's least squares (:func:`~decayprune.criteria.thinet_reconstruct`)
just before the selected channels are zeroed. The reconstruction assumes the channels vanish at once,
so it runs with the ``oneshot`` policy (``reconstruct=None``, the default: under oneshot only;
``True`` with ``sp`` / ``sp+sr`` is refused); with ``sp`` / ``sp+sr`` the channels decay while
training adapts the next layer, and the method ranks like ``iterative`` with the ``thinet`` criterion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field

from ..criteria.thinet import thinet_reconstruct
from ..errors import UserError
from .base import register_method
from .iterative import IterativeMethod, RankingOptions

if TYPE_CHECKING:
    from .context import PruneContext

__all__ = ["ThiNetMethod"]


@register_method("thinet")
class ThiNetMethod(IterativeMethod):
    """Rank by the ThiNet criterion, then rebuild the next layers' kept inputs by least squares.

    Example:
        >>> ThiNetMethod.Options(entries=256).reconstruct is None   # None: reconstruct under oneshot only
        True
    """

    default_criterion = "thinet"

    class Options(RankingOptions):
        """Options of :class:`ThiNetMethod`."""

        reconstruct: bool | None = Field(
            None,
            description="least-squares rescaling of the kept input channels (None: with the oneshot policy only)",
        )
        batches: int = Field(4, ge=1, description="calibration batches for the reconstruction")
        entries: int = Field(512, ge=1, description="sampled output entries per consumer and batch")

    _reconstruct = False

    def setup(self, ctx: "PruneContext") -> None:
        super().setup(ctx)
        policy = ctx.decay_settings.policy
        wanted = self.options.reconstruct
        self._reconstruct = policy == "oneshot" if wanted is None else wanted
        if wanted and policy != "oneshot":
            raise UserError(
                f"method 'thinet' with reconstruct=True needs decay.policy='oneshot' (got {policy!r}): the "
                "least squares assume the channels vanish at once; use method 'iterative' with criterion "
                "'thinet' for sp / sp+sr, or reconstruct=False"
            )
        if self._reconstruct and ctx.calibration_data is None:
            raise UserError("method 'thinet' with reconstruct=True needs calibration_data")

    def select(self, ctx: "PruneContext") -> torch.Tensor | None:
        picked = super().select(ctx)
        if picked is not None and picked.numel() and self._reconstruct:
            removed = ctx.committed().cpu().clone()
            removed[picked.cpu()] = True
            thinet_reconstruct(ctx.scoring, removed, batches=self.options.batches, entries=self.options.entries)
        return picked
