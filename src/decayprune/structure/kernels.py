"""Element-level kernels: every element of a set of parameters mapped to a unit id, in memory order.

A :class:`FlatPlan` turns per-unit values (decay factors, keep-at-zero masks) into element
values with one gather, and per-unit sums of squares into one ``index_add_``, so a DPM pass
costs a bounded number of kernels whatever the number of parameters. Its entries are either
*row* entries (one id per position along one dim: channel groups) or *element* entries (one id
per element, ``dim=None``: element masks). :func:`hold_at_zero_` is the one keep-at-zero
dispatch (row fills on the CPU, a multiply by the keep factors elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch

from .slices import ParamSlice

__all__ = ["FlatPlan", "SliceEntry", "build_flat_plans", "hold_at_zero_", "merge_slices", "pad"]

Rows = list[tuple[int, int, torch.Tensor]]


def pad(values: torch.Tensor, fill: float) -> torch.Tensor:
    """``values`` with one extra last entry ``fill`` (the slot of positions outside any structure)."""
    return torch.cat([values, torch.full((1,), fill, dtype=values.dtype, device=values.device)])


@dataclass
class SliceEntry:
    """All slices of one role on one (parameter, dim), merged over layer groups.

    ``ids[i]`` is the structure at position ``i`` along ``dim``, or ``S`` (the padding slot)
    where the parameter has no structure of this role. With ``dim=None`` the entry is
    element-wise: ``ids`` has the parameter's shape and names the unit of every element.
    """

    param: torch.Tensor
    dim: int | None
    ids: torch.Tensor
    _on: dict = field(default_factory=dict)

    @property
    def elementwise(self) -> bool:
        """True for an entry with one unit id per element (``dim=None``)."""
        return self.dim is None

    @property
    def row_dim(self) -> int:
        """The sliced dim of a row entry (an element-wise entry has none: ``ValueError``)."""
        if self.dim is None:
            raise ValueError("an element-wise entry has no sliced dim")
        return self.dim

    def ids_on(self, device: torch.device) -> torch.Tensor:
        """``ids`` on ``device`` (copied once)."""
        if device not in self._on:
            self._on[device] = self.ids.to(device)
        return self._on[device]


def merge_slices(slices: Iterable[tuple[object, ParamSlice, torch.Tensor]], num_structures: int) -> list[SliceEntry]:
    """Merge slices per (parameter, dim); a position claimed twice opens a second entry."""
    entries: dict[tuple[int, int], list[SliceEntry]] = {}
    out: list[SliceEntry] = []
    for _layer, s, ids in slices:
        candidates = entries.setdefault((id(s.param), s.dim), [])
        entry = next((e for e in candidates if bool((e.ids[s.positions] == num_structures).all())), None)
        if entry is None:
            entry = SliceEntry(s.param, s.dim, torch.full((s.param.shape[s.dim],), num_structures, dtype=torch.long))
            candidates.append(entry)
            out.append(entry)
        entry.ids[s.positions] = ids
    return out


def _is_dense(t: torch.Tensor) -> bool:
    """True when ``t`` covers its memory without gaps or overlaps (any dim order)."""
    expected = 1
    for size, stride in sorted(((sz, st) for sz, st in zip(t.shape, t.stride()) if sz != 1), key=lambda p: p[1]):
        if stride != expected:
            return False
        expected *= size
    return True


class FlatPlan:
    """Every element of a list of parameters mapped to a structure id, in memory order.

    Per-structure values reach every element with one gather into a persistent buffer whose
    views (one per parameter, same shape and strides) feed one ``torch._foreach_mul_``; per-
    structure sums of squares are one ``cat`` (gradients: one ``_foreach_copy_`` into a persistent
    buffer), one ``square_`` and one ``index_add_``. The per-parameter views are made once per plan
    and the plan is rebuilt when a parameter's shape, strides or storage change
    (:meth:`matches_layout`), so a DPM pass dispatches a bounded number of calls whatever the
    number of parameters, and no host sync. On the CPU, where launches are cheap and memory
    bandwidth is not, sums of squares are one per-row norm per parameter of two or more dims
    instead (the 1-D ones share one ``cat``; no model-sized copy), and keep-at-zero can fill only
    the rows of pruned structures (:meth:`dead_rows`, :meth:`zero_rows_`).

    Attributes:
        params: The parameters (each once).
        index: ``[E]`` structure id of every element (``S`` outside any structure), on the device
            (int32: 4 bytes per parameter element, plus one float32 buffer per slot once used:
            gathered values, keep factors, gradients).
    """

    cpu_row_ops = True
    """On the CPU, per-row ops per parameter instead of model-sized element passes (False: the
    accelerator's fused path everywhere)."""

    def __init__(self, entries: list[SliceEntry], num_structures: int, device: torch.device) -> None:
        self.params = [e.param for e in entries]
        self.num_structures = num_structures
        self._elementwise = any(e.elementwise for e in entries)
        self._rows = [(tuple(d for d in range(e.param.dim()) if d != e.dim), e.dim or 0) for e in entries]
        self._entry_ids = [e.ids for e in entries]
        # Row sums of squares on the CPU: the 1-D parameters (one row per element) first, in one
        # ``cat``, then one row norm per parameter of more dims; ``row_index`` follows that order.
        self._row_order = [i for i, e in enumerate(entries) if e.param.dim() == 1]
        self._row_order += [i for i, e in enumerate(entries) if e.param.dim() != 1]
        self.row_index = (
            torch.cat([entries[i].ids_on(device) for i in self._row_order])
            if entries and not self._elementwise
            else torch.zeros(0, dtype=torch.long, device=device)
        )
        parts = []
        for e in entries:
            if not _is_dense(e.param):
                raise ValueError(
                    f"a {tuple(e.param.shape)} parameter with strides {e.param.stride()} is not dense; "
                    "decayprune needs dense (contiguous or channels-last) parameters"
                )
            shape = [1] * e.param.dim()
            if e.dim is not None:
                shape[e.dim] = -1
            holder = torch.empty_like(e.param, dtype=self._index_dtype(), device=device)  # the parameter's strides
            ids = e.ids_on(device)
            holder.copy_(ids.view(shape).expand(e.param.shape) if e.dim is not None else ids)
            parts.append(holder.as_strided((holder.numel(),), (1,)))
        self.numels = [p.numel() for p in self.params]
        self._layout = self._current_layout()
        self.index = torch.cat(parts) if parts else torch.zeros(0, dtype=self._index_dtype(), device=device)
        self._buffers: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = {}  # allocated on first gather
        self._versions: dict[str, object] = {}
        with torch.no_grad():
            self._flat_params = [p.detach().as_strided((p.numel(),), (1,)) for p in self.params]

    def flat_params(self) -> list[torch.Tensor]:
        """Flat (1-D, memory-order) views of the parameters, aligned with :attr:`index`."""
        return self._flat_params

    def _current_layout(self) -> list[tuple[tuple[int, ...], tuple[int, ...], int]]:
        return [(tuple(p.shape), p.stride(), p.data_ptr()) for p in self.params]

    def _index_dtype(self) -> torch.dtype:
        return torch.int32 if self.num_structures < 2**31 - 1 else torch.long

    def matches_layout(self) -> bool:
        """False once a parameter changed its shape, strides or storage (``index`` and views are then stale).

        Host-side only (shapes, strides and data pointers): it dispatches no operator.
        """
        return self._current_layout() == self._layout

    def _as_params(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [chunk.as_strided(p.shape, p.stride()) for chunk, p in zip(flat.split(self.numels), self.params)]

    def _slot(self, slot: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The persistent float buffer of ``slot`` (aligned with :attr:`index`) and its per-parameter views.

        Made on first use and kept for the plan's life: a plan is rebuilt (see :meth:`matches_layout`)
        whenever a parameter's storage, shape or strides change, so the views never go stale, and a
        step reuses them instead of making one view per parameter tensor.
        """
        if slot not in self._buffers:
            buffer = torch.empty(self.index.numel(), device=self.index.device)
            self._buffers[slot] = (buffer, self._as_params(buffer))
        return self._buffers[slot]

    def tensors(self, source: str = "weight") -> list[torch.Tensor | None]:
        """The parameters (``"weight"``) or their gradients (``"grad"``, None where absent)."""
        if source == "weight":
            return list(self.params)
        return [p.grad for p in self.params]

    def gather(self, padded: torch.Tensor, slot: str = "values", version: object = None) -> list[torch.Tensor]:
        """Views, shaped like the parameters, of ``padded[structure of each element]``.

        ``padded`` has ``S + 1`` entries. The views share the buffer of ``slot``, overwritten by
        the next gather into it; with a ``version`` equal to the last one the gather is skipped
        (the caller vouches that ``padded`` did not change).
        """
        buffer, views = self._slot(slot)
        if version is None or self._versions.get(slot) != version:
            torch.index_select(padded.to(buffer.dtype), 0, self.index, out=buffer)
            self._versions[slot] = version
        return views

    @staticmethod
    @torch.no_grad()
    def mul_(tensors: Sequence[torch.Tensor | None], factors: list[torch.Tensor]) -> None:
        """``tensors[i] *= factors[i]`` in one foreach call (``None`` entries are skipped)."""
        pairs = [(t, f) for t, f in zip(tensors, factors) if t is not None]
        if pairs:
            torch._foreach_mul_([t for t, _ in pairs], [f for _, f in pairs])

    def mul_state_(self, optimizer: torch.optim.Optimizer, factors: list[torch.Tensor]) -> None:
        """Multiply the optimizer's per-element state (momentum, Adam moments) of each parameter."""
        states, views = [], []
        for p, f in zip(self.params, factors):
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    states.append(value)
                    views.append(f)
        self.mul_(states, views)

    def _flat_grads(self) -> torch.Tensor:
        """The gradients copied, in memory order, into the persistent ``"grad"`` buffer (0 where absent).

        One ``_foreach_copy_`` into the cached views (any gradient layout or dtype), one
        ``_foreach_zero_`` for missing gradients: a bounded number of calls whatever the depth.
        """
        buffer, views = self._slot("grad")
        present: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        missing: list[torch.Tensor] = []
        for p, view in zip(self.params, views):
            if p.grad is None:
                missing.append(view)
            else:
                present.append(view)
                grads.append(p.grad)
        if present:
            torch._foreach_copy_(present, grads)
        if missing:
            torch._foreach_zero_(missing)
        return buffer

    @torch.no_grad()
    def add_sumsq_(self, out: torch.Tensor, source: str = "weight") -> torch.Tensor:
        """``out[s] +=`` the sum of squares of structure s's elements of the parameters
        (``source="weight"``) or their gradients (``"grad"``); ``out`` has ``S + 1`` entries."""
        if not self.params:
            return out
        if self.use_row_ops():
            return self._add_row_sumsq_(out, source)
        flat = torch.cat(self._flat_params).float() if source == "weight" else self._flat_grads()
        return out.index_add_(0, self.index, flat.square_())

    def use_row_ops(self) -> bool:
        """True on the CPU (see :attr:`cpu_row_ops`) for a plan of row entries only."""
        return self.cpu_row_ops and not self._elementwise and self.index.device.type == "cpu"

    def dead_rows(self, pruned: torch.Tensor, version: object) -> list[tuple[int, int, torch.Tensor]]:
        """``(parameter number, dim, positions)`` of the rows of ``pruned`` structures (cached per version)."""
        if self._versions.get("dead") != version:
            dead = torch.cat([pruned.bool().cpu(), torch.zeros(1, dtype=torch.bool)])
            rows = []
            for i, (entry_ids, (_others, dim)) in enumerate(zip(self._entry_ids, self._rows)):
                pos = dead[entry_ids].nonzero().flatten()
                if pos.numel():
                    rows.append((i, dim, pos.to(self.index.device)))
            self._dead_rows, self._versions["dead"] = rows, version
        return self._dead_rows

    @staticmethod
    @torch.no_grad()
    def zero_rows_(tensors: Sequence[torch.Tensor | None], rows: list[tuple[int, int, torch.Tensor]]) -> None:
        """Fill the given rows of ``tensors`` (aligned with :attr:`params`) with exact zeros."""
        for i, dim, pos in rows:
            tensor = tensors[i]
            if tensor is not None:
                tensor.index_fill_(dim, pos, 0)

    def zero_rows_state_(self, optimizer: torch.optim.Optimizer, rows: list[tuple[int, int, torch.Tensor]]) -> None:
        """:meth:`zero_rows_` on the optimizer's per-element state of each parameter."""
        for i, dim, pos in rows:
            p = self.params[i]
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    value.index_fill_(dim, pos, 0)

    def _add_row_sumsq_(self, out: torch.Tensor, source: str) -> torch.Tensor:
        # Called under no_grad (add_sumsq_): no detach needed, and a 1-D parameter's values are its
        # rows' values, so they go into the one ``cat`` as they are (squared after it).
        parts = []
        for i in self._row_order:
            p, (others, dim) = self.params[i], self._rows[i]
            t = p if source == "weight" else p.grad
            if t is None:
                parts.append(torch.zeros(p.shape[dim], device=p.device))
            elif not others:
                parts.append(t)
            else:
                parts.append(torch.linalg.vector_norm(t, dim=others, dtype=torch.float32))
        return out.index_add_(0, self.row_index, torch.cat(parts).float().square_())


def build_flat_plans(entries: list[SliceEntry], num_structures: int, device: torch.device) -> list[FlatPlan]:
    """Split ``entries`` into passes where each parameter appears once, one :class:`FlatPlan` each."""
    passes: list[list[SliceEntry]] = []
    for entry in entries:
        target = next((p for p in passes if all(e.param is not entry.param for e in p)), None)
        if target is None:
            passes.append(target := [])
        target.append(entry)
    return [FlatPlan(p, num_structures, device) for p in passes]


@torch.no_grad()
def hold_at_zero_(
    plan: FlatPlan,
    *,
    factors: Callable[[], list[torch.Tensor]],
    rows: Callable[[], Rows] | None = None,
    weights: bool = True,
    grads: bool = True,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Keep-at-zero on one plan: weights, gradients and the optimizer's per-element state.

    With ``rows`` (the rows of held units) and a plan that uses row ops, only those rows are
    filled with exact zeros; otherwise every element is multiplied by ``factors()`` (the keep
    vector gathered per element: 0 held, 1 kept). Both callables are evaluated only when used.

    Example:
        >>> w = torch.nn.Parameter(torch.ones(2, 3))
        >>> plan = FlatPlan([SliceEntry(w, 0, torch.tensor([0, 1]))], 2, torch.device("cpu"))
        >>> keep = torch.tensor([0.0, 1.0, 1.0])
        >>> hold_at_zero_(plan, factors=lambda: plan.gather(keep, "keep"), grads=False)
        >>> w.detach().sum(1).tolist()
        [0.0, 3.0]
    """
    if rows is not None and plan.use_row_ops():
        dead = rows()
        if weights:
            plan.zero_rows_(plan.params, dead)
        if grads:
            plan.zero_rows_(plan.tensors("grad"), dead)
        if optimizer is not None:
            plan.zero_rows_state_(optimizer, dead)
        return
    keep = factors()
    if weights:
        plan.mul_(plan.params, keep)
    if grads:
        plan.mul_(plan.tensors("grad"), keep)
    if optimizer is not None:
        plan.mul_state_(optimizer, keep)
