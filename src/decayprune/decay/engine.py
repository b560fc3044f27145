"""DPM: Smooth Pruning and Self-Rectifying, independent of the base method.

What follows the paper (Yang et al., "Decay Pruning Method"): a selected structure is not
zeroed at once but driven to zero over N optimizer steps while training continues, and
gradient information can release structures that were selected wrongly. The exact
self-rectifying formulas are not public; the ones here are decayprune's definition:

Smooth pruning, per target ``s`` selected at step ``k0``: ``L_init = ||x_s||``, ``n = 0``.
After every optimizer step, with ``x*`` the updated producer slices, ``n += 1`` and
``x_s = x* * L_init (N - n) / N / ||x*||`` (0 if ``||x*|| = 0``): the optimizer picks the
direction, the norm falls linearly, and is exactly 0 at ``n = N``. Then ``s`` is *pruned*
(held at zero until compaction).

Self-rectifying, after the step and before the rescale:
``C_rate = (||x*|| - ||x_s before the step||) / (L_init / N)`` (push-back in decay quanta) and
``C_len = ||g_s|| / mean_j ||g_j||`` over the un-pruned structures of the same layer group.
When ``C_rate > T_rate`` and ``C_len > T_len`` for ``W`` consecutive steps, ``s`` is released:
it keeps its current weights, trains normally, may not be selected again for ``cooldown``
steps, and the base method is asked to pick replacements so its budget still holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..structure import StructureSet
from .schedule import decay_norm
from ..config.prune import DecaySettings

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


class DecayEngine:
    """Drives selected structures to zero according to a :class:`DecaySettings` policy.

    Args:
        structures: The model's structures; pruned ones are held at zero.
        settings: The zeroing policy and DPM hyper-parameters.
        sink: Called with every event as a dict (e.g. to append to ``dpm_events.jsonl``).

    Example:
        >>> import torch.nn as nn
        >>> net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
        >>> s = StructureSet(net, torch.randn(1, 4))
        >>> eng = DecayEngine(s, DecaySettings(policy="sp", steps=2))
        >>> eng.start(torch.tensor([0]), step=0)
        >>> eng.after_step(step=1); eng.after_step(step=2)
        >>> bool(s.pruned[0]), float(net[0].weight[0].abs().sum())
        (True, 0.0)
    """

    def __init__(self, structures: StructureSet, settings: DecaySettings, sink: EventSink | None = None) -> None:
        self.structures = structures
        self.settings = settings
        self.sink = sink
        n = structures.num_structures
        self.active = torch.zeros(n, dtype=torch.bool)
        self.done_steps = torch.zeros(n, dtype=torch.long)
        self.l_init = torch.zeros(n)
        self.streak = torch.zeros(n, dtype=torch.long)
        self.cooldown_until = torch.full((n,), -1, dtype=torch.long)
        self.releases = 0
        self.completed = 0
        self._grad_norms: torch.Tensor | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    # ------------------------------------------------------------------ queries
    def committed(self) -> torch.Tensor:
        """Structures that are pruned or on their way to zero."""
        return self.structures.pruned | self.active

    def available(self, step: int) -> torch.Tensor:
        """Structures a method may select now (not committed, not cooling down)."""
        return ~self.committed() & (self.cooldown_until <= step)

    def _active_layers(self) -> list[int]:
        return torch.unique(self.structures.layer_of[self.active]).tolist()

    # ------------------------------------------------------------------ events
    def _emit(self, kind: str, step: int, ids: torch.Tensor, c_rate: torch.Tensor | None = None,
              c_len: torch.Tensor | None = None) -> None:
        if self.sink is None:
            return
        for i, sid in enumerate(ids.tolist()):
            layer = self.structures.layers[int(self.structures.layer_of[sid])].name
            event = DecayEvent(kind, step, sid, layer,
                               None if c_rate is None else float(c_rate[i]),
                               None if c_len is None else float(c_len[i]))
            self.sink(event.as_dict())

    # ------------------------------------------------------------------ lifecycle
    def start(self, ids: torch.Tensor, step: int) -> None:
        """Begin removing ``ids``: zero them now (``oneshot``) or start their decay."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        if ids.numel() == 0:
            return
        if not self.settings.smooth:
            self.structures.set_pruned(ids)
            self.structures.zero_pruned_(self.optimizer)
            self.completed += ids.numel()
            self._emit("oneshot", step, ids)
            return
        norms = self.structures.producer_norms(torch.unique(self.structures.layer_of[ids]).tolist())
        self.active[ids] = True
        self.done_steps[ids] = 0
        self.streak[ids] = 0
        self.l_init[ids] = norms[ids].cpu()
        self._emit("start", step, ids)

    def after_backward(self) -> None:
        """Zero gradients of pruned structures; record what self-rectifying needs."""
        self.structures.zero_grads_of_pruned_()
        if not self.active.any():
            self._grad_norms = None
            return
        if self.settings.self_rectifying:
            self._grad_norms = self.structures.grad_norms(self._active_layers()).cpu()

    def after_step(self, step: int) -> list[int]:
        """Apply keep-at-zero and one decay step; return the ids released at this step."""
        s = self.structures
        s.zero_pruned_(self.optimizer, grads=False)
        if not self.active.any():
            return []
        layers = self._active_layers()
        post = s.producer_norms(layers).cpu()
        released = self._rectify(step, post) if self.settings.self_rectifying else torch.zeros(0, dtype=torch.long)
        ids = self.active.nonzero().flatten()
        self.done_steps[ids] += 1
        target = decay_norm(self.l_init[ids], self.settings.steps, self.done_steps[ids])
        current = post[ids]
        factor = torch.where(current > 0, target / current.clamp_min(1e-30), torch.zeros_like(target))
        finished = self.done_steps[ids] >= self.settings.steps
        factor[finished] = 0.0
        factors = torch.ones(s.num_structures)
        factors[ids] = factor
        s.scale_producers_(factors, layers)
        done = ids[finished]
        if done.numel():
            self.active[done] = False
            s.set_pruned(done)
            s.zero_pruned_(self.optimizer, grads=False)
            self.completed += done.numel()
            self._emit("complete", step, done)
        return released.tolist()

    def _rectify(self, step: int, post: torch.Tensor) -> torch.Tensor:
        s = self.structures
        ids = self.active.nonzero().flatten()
        if self._grad_norms is None:
            return torch.zeros(0, dtype=torch.long)
        # Nothing touches the weights between the last rescale and this step, so the norm before
        # the step is the one the schedule imposed (L_init for a decay that just started).
        before = decay_norm(self.l_init[ids], self.settings.steps, self.done_steps[ids])
        quantum = (self.l_init[ids] / self.settings.steps).clamp_min(1e-12)
        c_rate = (post[ids] - before) / quantum
        alive = ~s.pruned
        layer_sum = torch.zeros(len(s.layers)).index_add_(0, s.layer_of[alive], self._grad_norms[alive])
        layer_cnt = torch.zeros(len(s.layers)).index_add_(0, s.layer_of[alive], torch.ones(int(alive.sum())))
        layer_mean = layer_sum / layer_cnt.clamp_min(1)
        c_len = self._grad_norms[ids] / layer_mean[s.layer_of[ids]].clamp_min(1e-12)
        resisting = (c_rate > self.settings.t_rate) & (c_len > self.settings.t_len)
        self.streak[ids] = torch.where(resisting, self.streak[ids] + 1, torch.zeros_like(self.streak[ids]))
        release = resisting & (self.streak[ids] >= self.settings.window)
        out = ids[release]
        if out.numel():
            self.active[out] = False
            self.streak[out] = 0
            self.cooldown_until[out] = step + self.settings.cooldown
            self.releases += out.numel()
            self._emit("release", step, out, c_rate[release], c_len[release])
        return out

    def finish(self, step: int) -> None:
        """Zero every structure still decaying (end of training) and mark it pruned."""
        ids = self.active.nonzero().flatten()
        if ids.numel() == 0:
            return
        self.active[ids] = False
        self.structures.set_pruned(ids)
        self.structures.zero_pruned_(self.optimizer)
        self.completed += ids.numel()
        self._emit("forced", step, ids)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "active": self.active.clone(),
            "done_steps": self.done_steps.clone(),
            "l_init": self.l_init.clone(),
            "streak": self.streak.clone(),
            "cooldown_until": self.cooldown_until.clone(),
            "pruned": self.structures.pruned.clone(),
            "releases": self.releases,
            "completed": self.completed,
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("active", "done_steps", "l_init", "streak", "cooldown_until"):
            getattr(self, key).copy_(state[key])
        self.structures.set_mask(state["pruned"])
        self.releases = int(state["releases"])
        self.completed = int(state["completed"])
