"""DPM events: what the engine logs (``start``, ``release``, ``complete``, ``oneshot``, ``forced``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["DecayEvent", "EventSink", "emit"]

EventSink = Callable[[dict], None]


@dataclass
class DecayEvent:
    """One logged DPM event (``start``, ``release``, ``complete``, ``oneshot`` or ``forced``)."""

    kind: str
    step: int
    structure: int
    layer: str
    c_rate: float | None = None
    c_len: float | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def emit(
    sink: EventSink,
    group_name: Callable[[int], str],
    kind: str,
    step: int,
    ids: torch.Tensor,
    c_rate: torch.Tensor | None = None,
    c_len: torch.Tensor | None = None,
) -> None:
    """Hand one event per unit of ``ids`` to ``sink`` as a dict (``c_rate`` / ``c_len`` aligned with ``ids``).

    Example:
        >>> got = []
        >>> emit(got.append, lambda unit: "conv1", "start", 3, torch.tensor([4]))
        >>> got
        [{'kind': 'start', 'step': 3, 'structure': 4, 'layer': 'conv1'}]
    """
    for i, sid in enumerate(ids.tolist()):
        event = DecayEvent(
            kind,
            step,
            sid,
            group_name(sid),
            None if c_rate is None else float(c_rate[i]),
            None if c_len is None else float(c_len[i]),
        )
        sink(event.as_dict())
