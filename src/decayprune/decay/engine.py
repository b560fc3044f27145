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

Self-rectifying, after the step and before the rescale, with ``x`` the slices before the step
and ``u = x* - x`` the optimizer's update:
``C_len = ||g_s|| / mean_j ||g_j||`` over the un-pruned structures of the same layer group, with
``g`` the loss gradient as the engine sees it in :meth:`DecayEngine.after_backward` (the Pruner
calls it before the method adds its regulariser; the optimizer's weight decay is not in it).

``sr_criterion="radial"`` (default): ``c_t = <u, x> / (||u|| ||x||)``, the radial share of the
update (+1: all of it pushes the norm back up, 0: it only turns ``x``, -1: it shrinks ``x``).
``C_rate`` and ``C_len`` are running means over the last ``W`` counted decay steps (exact means
for the first ``W``, then an EMA with weight ``1/W``; ``W`` is capped at ``N``); ``s`` is released
when, after at least ``W`` decay steps, ``C_rate > T_rate`` and ``C_len > T_len``. Why: the paper-literal push-back
below is a length, so it grows with the learning rate and shrinks with the weight scale (a
10x larger lr releases 10x more easily); measured on small_cnn / digits its median was 2e-4
quanta, so no fixed threshold fits. A cosine does not change when the lr (SGD, momentum, Adam:
the update is proportional to it) or the weight scale changes, and the window keeps one noisy
step from releasing anything.

``sr_criterion="pushback"`` (called ``"paper"`` before; a reconstruction, not the paper's formula):
``C_rate = (||x*|| - ||x||) / (L_init / N)`` (push-back in decay quanta of one step); both conditions
must hold for ``W`` consecutive steps.

A released ``s`` keeps its current weights (``on_release="keep"``; ``"restore"`` rescales them to
``L_init`` in the same step, keeping their direction), trains normally, may not be selected again for
``cooldown`` steps, and the base method is asked to pick replacements so its budget still holds
(the Pruner hands the release to the method in the same ``after_step`` call that reads it
back, so on the CPU the backfill starts at the step of the release). No release happens after
:attr:`DecayEngine.release_until` (the Pruner sets it to the last step at which a backfill's
decay can still end before the recovery margin).
"""

from __future__ import annotations

import torch

from ..config.prune import DecaySettings
from ..structure import PRODUCER, PrunableUnits
from ..structure.kernels import FlatPlan, hold_at_zero_
from .events import EventSink, emit
from .release import paper_rule, radial_rule, relative_length, update_cosine
from .schedule import decay_norm
from .stats import StatsBuffer

DEFAULT_DEVICE_SYNC_EVERY = 32
"""Read-back period K on an accelerator when ``DecaySettings.sync_every`` is left unset."""


class DecayEngine:
    """Drives selected structures to zero according to a :class:`DecaySettings` policy.

    All per-step state (decaying mask, ``L_init``, decay counters, SR streaks, gradient norms,
    the keep-at-zero vector) lives on the model's device, and one step is a fixed number of
    fused ops over every producer parameter with no host sync. What the host must know
    (completions, releases, the ``pruned`` mask, events) is read back at *sync points*: every
    :attr:`sync_every` calls of :meth:`after_step`, and whenever a caller asks (:attr:`decaying`,
    :meth:`committed`, :meth:`available`, :meth:`start`, :meth:`finish`, :meth:`state_dict`,
    :meth:`sync`). Between sync points the math is already exact: a finished decay is held at
    zero (weights, gradients, optimizer state) on the device; only its bookkeeping
    (``structures.pruned``, ``complete`` events, the ids :meth:`after_step` returns) lags by at
    most ``sync_every - 1`` steps. Events keep the step at which they happened.

    Call :meth:`after_backward` after every backward (also each micro-batch under gradient
    accumulation) and :meth:`after_step` once per optimizer step; a second :meth:`after_step`
    with no :meth:`after_backward` in between raises ``RuntimeError`` (it would count one
    optimizer step twice). Pass ``skipped`` when AMP skipped the optimizer step: counters and
    streaks then do not advance.

    Args:
        structures: The units (any :class:`~decayprune.structure.PrunableUnits`: channel groups,
            element masks ...); pruned ones are held at zero.
        settings: The zeroing policy and DPM hyper-parameters.
        sink: Called with every event as a dict (e.g. to append to ``dpm_events.jsonl``).

    Example:
        >>> import torch.nn as nn
        >>> net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
        >>> from decayprune.structure import StructureSet
        >>> s = StructureSet(net, torch.randn(1, 4))
        >>> eng = DecayEngine(s, DecaySettings(policy="sp", steps=2))
        >>> eng.start(torch.tensor([0]), step=0)
        >>> for k in (1, 2):
        ...     eng.after_backward(); released = eng.after_step(step=k)
        >>> bool(s.pruned[0]), float(net[0].weight[0].abs().sum())
        (True, 0.0)
    """

    def __init__(
        self,
        structures: PrunableUnits,
        settings: DecaySettings,
        sink: EventSink | None = None,
        stats_sink: EventSink | None = None,
    ) -> None:
        self.structures = structures
        self.settings = settings
        self.sink = sink
        self.release_until: int | None = None
        """No self-rectifying release after this step (None: no limit)."""
        self._snapshots: list[torch.Tensor] | None = None
        self._stats = StatsBuffer(settings, stats_sink)
        n = structures.num_structures
        self._sync_every = settings.sync_every
        # Host mirrors, exact at sync points.
        self._decaying = torch.zeros(n, dtype=torch.bool)
        self.cooldown_until = torch.full((n,), -1, dtype=torch.long)
        self.releases = 0
        self.completed = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self._pending_released: list[int] = []
        self._steps_since_sync = 0
        self._backward_seen = True
        self._grad_sq: torch.Tensor | None = None
        self._mask_version = -1
        self._keep_version = 0  # bumped whenever the keep vector may have changed (cached gathers)
        self._pruned_any = False
        self._n_decaying = 0
        self._dev = torch.device("cpu")
        self._layer_of = structures.layer_of
        self._state = self._fresh_state(n, self._dev)
        self._check_device()

    # ------------------------------------------------------------------ device state
    @staticmethod
    def _fresh_state(n: int, device: torch.device) -> dict[str, torch.Tensor]:
        zeros = lambda dtype: torch.zeros(n, dtype=dtype, device=device)
        return {
            "decaying": zeros(torch.bool),
            "done_steps": zeros(torch.long),
            "l_init": zeros(torch.float32),
            "streak": zeros(torch.long),
            "ema_rate": zeros(torch.float32),
            "ema_len": zeros(torch.float32),
            # Events since the last sync point: completions and releases with their step and statistics.
            "completed_flag": zeros(torch.bool),
            "completed_step": zeros(torch.long),
            "released_flag": zeros(torch.bool),
            "released_step": zeros(torch.long),
            "c_rate": zeros(torch.float32),
            "c_len": zeros(torch.float32),
            "keep": torch.ones(n + 1, device=device),  # 0 = held at zero; last entry: padding slot
        }

    def _check_device(self) -> None:
        """Follow the model to its device; refresh the keep vector when the pruned mask changed."""
        device = self.structures.device
        if device != self._dev:
            self._state = {k: v.to(device) for k, v in self._state.items()}
            self._dev = device
            self._layer_of = self.structures.layer_of.to(device)
            self._keep_version += 1
        if self.structures.mask_version != self._mask_version:
            st = self._state
            keep = self.structures.keep_vector().clone()
            keep[:-1].masked_fill_(st["completed_flag"], 0.0)
            st["keep"] = keep
            self._keep_version += 1
            self._mask_version = self.structures.mask_version
            self._pruned_any = bool(self.structures.pruned.any())

    @property
    def sync_every(self) -> int:
        """K: events are read back every K optimizer steps (``settings.sync_every``; unset: 1 on
        the CPU, where a read-back costs no device sync, and 32 on an accelerator)."""
        if self._sync_every is not None:
            return self._sync_every
        return 1 if self._dev.type == "cpu" else DEFAULT_DEVICE_SYNC_EVERY

    @sync_every.setter
    def sync_every(self, value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError(f"sync_every must be >= 1, got {value}")
        self._sync_every = value

    def _any_decaying(self) -> bool:
        return self._n_decaying > 0

    def _committed_any(self) -> bool:
        """Host-side: is anything pruned or decaying (no device read)."""
        return self._n_decaying > 0 or self._pruned_any

    # ------------------------------------------------------------------ queries
    @property
    def decaying(self) -> torch.Tensor:
        """Structures on their way to zero (bool ``[S]`` on the CPU; reads back pending events)."""
        self.sync()
        return self._decaying

    @property
    def done_steps(self) -> torch.Tensor:
        """Decay steps done per structure (a CPU copy)."""
        return self._state["done_steps"].to("cpu", copy=True)

    @property
    def l_init(self) -> torch.Tensor:
        """Norm of each decaying structure when its decay started (a CPU copy)."""
        return self._state["l_init"].to("cpu", copy=True)

    @property
    def streak(self) -> torch.Tensor:
        """Consecutive steps each decaying structure met both release conditions (a CPU copy)."""
        return self._state["streak"].to("cpu", copy=True)

    def committed(self) -> torch.Tensor:
        """Structures that are pruned or on their way to zero."""
        decaying = self.decaying
        return self.structures.pruned | decaying

    def available(self, step: int) -> torch.Tensor:
        """Structures a method may select now (not committed, not cooling down)."""
        return ~self.committed() & (self.cooldown_until <= step)

    # ------------------------------------------------------------------ events
    def _emit(
        self,
        kind: str,
        step: int,
        ids: torch.Tensor,
        c_rate: torch.Tensor | None = None,
        c_len: torch.Tensor | None = None,
    ) -> None:
        if self.sink is not None:
            emit(self.sink, self.structures.group_name, kind, step, ids, c_rate, c_len)

    def sync(self) -> None:
        """Read back what happened on the device since the last sync point.

        Completed decays become ``structures.pruned`` (``complete`` events), releases start
        their cool-down (``release`` events, and their ids are returned by the next
        :meth:`after_step`). Costs a few device-to-host copies; a no-op when no step ran since.
        """
        if self._steps_since_sync == 0:
            return
        self._steps_since_sync = 0
        self._stats.flush()
        st = self._state
        if not self._any_decaying():
            return
        flags = torch.stack([st["completed_flag"], st["released_flag"], st["decaying"]]).cpu()
        completed, released = flags[0].nonzero().flatten(), flags[1].nonzero().flatten()
        self._decaying = flags[2].clone()
        self._n_decaying = int(self._decaying.sum())
        if completed.numel() == 0 and released.numel() == 0:
            return
        info = torch.stack([st[k].double() for k in ("completed_step", "released_step", "c_rate", "c_len")]).cpu()
        events = [(int(info[0, i]), 1, "complete", i) for i in completed.tolist()]
        events += [(int(info[1, i]), 0, "release", i) for i in released.tolist()]
        st["completed_flag"].zero_()
        st["released_flag"].zero_()
        if released.numel():
            self.cooldown_until[released] = info[1, released].long() + self.settings.cooldown
            self.releases += released.numel()
            self._pending_released += released.tolist()
        if completed.numel():
            self.structures.set_pruned(completed)
            self._check_device()  # rebuilds the keep vector from the mask (zeros where it already was)
            self.completed += completed.numel()
        for step, _order, kind, sid in sorted(events):
            ids = torch.tensor([sid])
            if kind == "release":
                self._emit(kind, step, ids, info[2, sid : sid + 1], info[3, sid : sid + 1])
            else:
                self._emit(kind, step, ids)

    # ------------------------------------------------------------------ lifecycle
    def start(self, ids: torch.Tensor, step: int) -> None:
        """Begin removing ``ids``: zero them now (``oneshot``) or start their decay."""
        ids = torch.as_tensor(ids, dtype=torch.long).cpu()
        if ids.numel() == 0:
            return
        self.sync()
        if not self.settings.smooth:
            self.structures.set_pruned(ids)
            self.structures.zero_pruned_(self.optimizer)
            self.completed += ids.numel()
            self._emit("oneshot", step, ids)
            return
        self._check_device()
        st = self._state
        norms = self.structures.producer_norms()
        dev_ids = ids.to(self._dev)
        st["decaying"][dev_ids] = True
        st["done_steps"][dev_ids] = 0
        st["streak"][dev_ids] = 0
        st["ema_rate"][dev_ids] = 0.0
        st["ema_len"][dev_ids] = 0.0
        st["l_init"][dev_ids] = norms[dev_ids]
        self._decaying[ids] = True
        self._n_decaying = int(self._decaying.sum())
        self._emit("start", step, ids)

    @torch.no_grad()
    def after_backward(self) -> None:
        """Zero gradients of held structures; record the gradient norms self-rectifying needs."""
        self._backward_seen = True
        self._check_device()
        self._grad_sq = None
        self._snapshots = None
        if not self._committed_any():
            return
        sr = self.settings.self_rectifying and self._any_decaying()
        radial = sr and self.settings.sr_criterion == "radial"
        grad_sq = torch.zeros(self.structures.num_structures + 1, device=self._dev) if sr else None
        self._grad_sq = grad_sq
        snapshots = []
        for plan in self.structures.flat_plans(PRODUCER):
            hold_at_zero_(plan, **self._held(plan), weights=False)
            if grad_sq is not None:
                plan.add_sumsq_(grad_sq, "grad")
            if radial and plan.params:
                # The weights before the optimizer step (radial C_rate needs the update itself).
                snapshots.append(torch.cat(plan.flat_params()).float())
        if radial:
            self._snapshots = snapshots

    @torch.no_grad()
    def after_step(self, step: int, skipped: bool | torch.Tensor = False) -> list[int]:
        """Keep-at-zero and one decay step; return the ids released (as read back so far).

        Args:
            step: The optimizer step just done (events are stamped with it).
            skipped: True (or a device bool tensor) when the optimizer step did not happen, e.g.
                AMP's GradScaler found inf/NaN gradients: counters and streaks do not advance.
        """
        if not self._backward_seen:
            raise RuntimeError(
                "DecayEngine.after_step called twice without after_backward in between: call after_step once "
                "per optimizer step (under gradient accumulation, after the step, not after each micro-batch)"
            )
        self._backward_seen = False
        self._check_device()
        self._steps_since_sync += 1
        if self._committed_any() and not (isinstance(skipped, bool) and skipped):
            if self._any_decaying():
                self._decay_step(step, skipped)
            else:
                self._hold_at_zero()
        if self._steps_since_sync >= self.sync_every:
            self.sync()
        released, self._pending_released = self._pending_released, []
        return released

    def _keep_factors(self, plan: FlatPlan) -> list[torch.Tensor]:
        """Per-element keep factors of ``plan``, gathered again only when the keep vector changed."""
        return plan.gather(self._state["keep"], "keep", ("engine", id(self), self._keep_version))

    def _held(self, plan: FlatPlan) -> dict:
        """The two forms of the held units for :func:`hold_at_zero_`: element factors, and rows.

        Row fills touch only the held rows (cheaper on the CPU), used only while nothing decays,
        since the keep vector then equals the host's mask (no completion can be pending on the device).
        """
        s = self.structures
        rows = None if self._any_decaying() else (lambda: plan.dead_rows(s.pruned, ("mask", s.mask_version)))
        return {"factors": lambda: self._keep_factors(plan), "rows": rows}

    def _hold_at_zero(self) -> None:
        for plan in self.structures.flat_plans(PRODUCER):
            hold_at_zero_(plan, **self._held(plan), grads=False, optimizer=self.optimizer)

    def _decay_step(self, step: int, skipped: bool | torch.Tensor) -> None:
        """Self-rectifying, then rescale decaying structures to their scheduled norm, all on device."""
        s, st, n_steps = self.structures, self._state, self.settings.steps
        post = s.producer_norms()
        # A Python bool never reaches the device (a host-to-device copy would be a sync point).
        advance = None if isinstance(skipped, bool) else torch.logical_not(skipped.to(self._dev, torch.bool))
        released = None
        if self.settings.self_rectifying and self._grad_sq is not None:
            released = self._rectify(step, post, advance)
        decaying = st["decaying"]
        counted = decaying if advance is None else decaying & advance
        done = st["done_steps"] + counted.long()
        target = decay_norm(st["l_init"], n_steps, done)
        factor = torch.where(post > 0, target / post.clamp_min(1e-30), torch.zeros_like(target))
        finished = decaying & (done >= n_steps)
        factor = torch.where(counted, factor, torch.ones_like(factor)).masked_fill_(finished, 0.0)
        if released is not None and self.settings.on_release == "restore":
            back = torch.where(post > 0, st["l_init"] / post.clamp_min(1e-30), torch.ones_like(post))
            factor = torch.where(released, back, factor)
        st["done_steps"].copy_(done)
        decaying.logical_and_(~finished)
        st["completed_flag"].logical_or_(finished)
        st["completed_step"].masked_fill_(finished, step)
        keep = st["keep"]
        keep[:-1].masked_fill_(finished, 0.0)
        self._keep_version += 1  # finished decays may have changed it (unknown to the host)
        factor.mul_(keep[:-1])
        padded = torch.cat([factor, keep[-1:]])
        for plan in s.flat_plans(PRODUCER):
            plan.mul_(plan.params, plan.gather(padded))
            if self.optimizer is not None:
                plan.mul_state_(self.optimizer, self._keep_factors(plan))

    def _rectify(self, step: int, post: torch.Tensor, advance: torch.Tensor | None) -> torch.Tensor:
        """Read self-rectifying's criteria; stop the decay of the structures it releases and return them
        (a bool per structure, on the device)."""
        s, st, cfg = self.structures, self._state, self.settings
        decaying = st["decaying"]
        # Nothing touches the weights between the last rescale and this step, so the norm before
        # the step is the one the schedule imposed (L_init for a decay that just started).
        before = decay_norm(st["l_init"], cfg.steps, st["done_steps"])
        quantum = (st["l_init"] / cfg.steps).clamp_min(1e-12)
        c_rate = (post - before) / quantum  # the paper-literal push-back (replaced below for "radial")
        assert self._grad_sq is not None  # after_step calls _rectify only when after_backward filled it
        c_len = relative_length(self._grad_sq[:-1].sqrt(), st["keep"][:-1], self._layer_of, s.num_groups)
        counted = decaying if advance is None else decaying & advance
        if cfg.sr_criterion == "radial" and self._snapshots is not None:
            plans = [p for p in s.flat_plans(PRODUCER) if p.params]
            c_rate = update_cosine(plans, self._snapshots, s.num_structures)
            self._snapshots = None
            c_rate, c_len, streak, release = radial_rule(st, c_rate, c_len, counted, cfg)
        else:
            streak, release = paper_rule(st["streak"], c_rate, c_len, counted, cfg)
        self._stats.record(step, counted, c_rate, c_len, rows=max(self.sync_every, 1))
        if self.release_until is not None and step > self.release_until:
            release = torch.zeros_like(release)  # a backfill could no longer finish before the recovery margin
        st["streak"].copy_(streak.masked_fill_(release, 0))
        st["released_flag"].logical_or_(release)
        st["released_step"].masked_fill_(release, step)
        st["c_rate"].copy_(torch.where(release, c_rate, st["c_rate"]))
        st["c_len"].copy_(torch.where(release, c_len, st["c_len"]))
        decaying.logical_and_(~release)
        return release

    def finish(self, step: int) -> int:
        """Zero every structure still decaying (end of training) and mark it pruned; returns how many."""
        ids = self.decaying.nonzero().flatten()
        if ids.numel() == 0:
            return 0
        self._state["decaying"][ids.to(self._dev)] = False
        self._decaying[ids] = False
        self._n_decaying = int(self._decaying.sum())
        self.structures.set_pruned(ids)
        self.structures.zero_pruned_(self.optimizer)
        self.completed += ids.numel()
        self._emit("forced", step, ids)
        return int(ids.numel())

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        self.sync()
        st = self._state
        return {
            "decaying": self._decaying.clone(),
            "done_steps": st["done_steps"].cpu().clone(),
            "l_init": st["l_init"].cpu().clone(),
            "streak": st["streak"].cpu().clone(),
            "ema_rate": st["ema_rate"].cpu().clone(),
            "ema_len": st["ema_len"].cpu().clone(),
            "cooldown_until": self.cooldown_until.clone(),
            "pruned": self.structures.pruned.clone(),
            "releases": self.releases,
            "completed": self.completed,
        }

    def load_state_dict(self, state: dict) -> None:
        decaying = state["decaying"] if "decaying" in state else state["active"]  # "active": before 0.x renaming
        self._state = self._fresh_state(self.structures.num_structures, self._dev)
        st = self._state
        st["decaying"].copy_(decaying)
        for key in ("done_steps", "l_init", "streak"):
            st[key].copy_(state[key])
        for key in ("ema_rate", "ema_len"):  # absent in checkpoints written before the radial criterion
            if key in state:
                st[key].copy_(state[key])
        self._decaying = decaying.clone().cpu().bool()
        self._n_decaying = int(self._decaying.sum())
        self.cooldown_until.copy_(state["cooldown_until"])
        self.structures.set_mask(state["pruned"])
        self._mask_version = -1
        self._check_device()
        self.releases = int(state["releases"])
        self.completed = int(state["completed"])
        self._pending_released = []
        self._steps_since_sync = 0
