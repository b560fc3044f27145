"""Settings of the zeroing policy (how selected structures reach zero)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Policy = Literal["oneshot", "sp", "sp+sr"]


class DecaySettings(BaseModel):
    """How selected structures go to zero: at once (``oneshot``) or by DPM's decay.

    Example:
        >>> DecaySettings(policy="sp+sr", steps=50).self_rectifying
        True
    """

    model_config = ConfigDict(extra="forbid")

    policy: Policy = Field("sp+sr", description="oneshot: zero at selection; sp: smooth decay; sp+sr: decay + self-rectifying")
    steps: int = Field(100, ge=1, description="N: optimizer steps a structure takes to decay from its norm to exactly zero")
    t_rate: float = Field(1.0, description="T_rate: release when C_rate (push-back in decay quanta) exceeds this")
    t_len: float = Field(2.0, ge=0, description="T_len: release when C_len (gradient norm / layer mean) exceeds this")
    window: int = Field(1, ge=1, description="W: both conditions must hold this many consecutive steps")
    cooldown: int = Field(200, ge=0, description="steps a released structure may not be selected again")
    sync_every: int | None = Field(
        None, ge=1,
        description="K: DPM's events (completions, releases) are read back to the host every K optimizer steps "
        "(and whenever the pruned/decaying sets are queried, e.g. at selection points); the math is exact in "
        "between. None: 1 on the CPU, 32 on an accelerator",
    )

    @property
    def smooth(self) -> bool:
        """True for the DPM policies (``sp`` and ``sp+sr``)."""
        return self.policy != "oneshot"

    @property
    def self_rectifying(self) -> bool:
        """True when self-rectifying is on (``sp+sr``)."""
        return self.policy == "sp+sr"
