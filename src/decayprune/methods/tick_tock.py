"""Gate Decorator's Tick-Tock schedule, counted in optimizer steps.

A *Tick* is ``tick_steps`` steps in which only the gates train (the other weights are frozen)
while Taylor gate scores accumulate; at its end a fraction of the remaining channels is pruned.
After every ``tock_every`` ticks comes a *Tock*: ``tock_steps`` steps of normal training with an
L1 penalty on the gates and a triangular learning rate ``lr_min -> lr_max -> lr_min``. The cycle
repeats from the first selection step until the MACs target is met; then plain fine-tuning.
The phase of a step is a pure function of the step (nothing to checkpoint but the "done" flag).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Phase", "TickTockSchedule", "triangular_lr"]


@dataclass(frozen=True)
class Phase:
    """Where one optimizer step lies in the Tick-Tock cycle.

    Attributes:
        kind: ``"tick"`` or ``"tock"``.
        index: The tick number (from 0) for a tick; the tock number for a tock.
        position: Steps into this tick / tock (from 0).
        length: Steps of this tick / tock.
    """

    kind: Literal["tick", "tock"]
    index: int
    position: int
    length: int

    @property
    def last(self) -> bool:
        """True on the final step of this tick / tock (a tick selects after it)."""
        return self.position == self.length - 1


@dataclass(frozen=True)
class TickTockSchedule:
    """The cycle ``tock_every`` ticks, then one tock (skipped when ``tock_steps == 0``), from ``start``;
    with ``first_tock > 0`` a tock of that many steps comes first (the reference starts with a Tock).

    Example:
        >>> s = TickTockSchedule(start=1, tick_steps=2, tock_every=2, tock_steps=3)
        >>> [s.phase(k).kind[1] + str(s.phase(k).index) for k in range(1, 10)]
        ['i0', 'i0', 'i1', 'i1', 'o0', 'o0', 'o0', 'i2', 'i2']
        >>> first = TickTockSchedule(start=1, tick_steps=2, tock_every=2, tock_steps=3, first_tock=2)
        >>> [first.phase(k).kind[1] + str(first.phase(k).index) for k in range(1, 8)]
        ['o0', 'o0', 'i0', 'i0', 'i1', 'i1', 'o1']
    """

    start: int
    tick_steps: int
    tock_every: int
    tock_steps: int
    first_tock: int = 0

    def __post_init__(self) -> None:
        if self.start < 1 or self.tick_steps < 1 or self.tock_every < 1 or self.tock_steps < 0 or self.first_tock < 0:
            raise ValueError(
                "Tick-Tock needs start >= 1, tick_steps >= 1, tock_every >= 1 and tock_steps >= 0, got "
                f"start={self.start}, tick_steps={self.tick_steps}, tock_every={self.tock_every}, "
                f"tock_steps={self.tock_steps}, first_tock={self.first_tock}"
            )

    @property
    def cycle(self) -> int:
        """Steps of one full cycle (``tock_every`` ticks and a tock)."""
        return self.tock_every * self.tick_steps + self.tock_steps

    def phase(self, step: int) -> Phase | None:
        """The phase of optimizer step ``step`` (counted from 1); None before ``start``."""
        if step < self.start:
            return None
        r0 = step - self.start
        if r0 < self.first_tock:
            return Phase("tock", 0, r0, self.first_tock)
        cycle, r = divmod(r0 - self.first_tock, self.cycle)
        ticks = self.tock_every * self.tick_steps
        if r < ticks:
            return Phase("tick", cycle * self.tock_every + r // self.tick_steps, r % self.tick_steps, self.tick_steps)
        return Phase("tock", cycle + (1 if self.first_tock else 0), r - ticks, self.tock_steps)


def triangular_lr(position: int, length: int, lr_min: float, lr_max: float) -> float:
    """Learning rate at ``position`` of a ``length``-step triangle ``lr_min -> lr_max -> lr_min``.

    Example:
        >>> [round(triangular_lr(k, 5, 0.0, 1.0), 2) for k in range(5)]
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    if length <= 1:
        return lr_max
    half = (length - 1) / 2
    return lr_min + (lr_max - lr_min) * (1 - abs(position - half) / half)
