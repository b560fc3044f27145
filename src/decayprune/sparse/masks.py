"""Element masks: every weight element of a model's Linear / Conv layers is one prunable unit.

:class:`ElementMasks` implements :class:`~decayprune.structure.PrunableUnits`, so the same
:class:`~decayprune.decay.DecayEngine` that removes channel groups removes single weights:
``oneshot`` zeroes them at once, ``sp`` decays each selected weight's magnitude linearly to exactly
zero in N steps, ``sp+sr`` releases the ones whose gradients resist. A held weight stays at exactly
zero in its value, its gradient and the optimizer's per-element state (SGD momentum, Adam moments):
``weight = dense * mask`` with the mask applied in place, so the model needs no wrapper.

Units are numbered layer after layer, each layer's weight in row-major (``flatten``) order; one
group per layer (self-rectifying compares a weight with the others of its layer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from ..measure.inputs import as_inputs, call_model, input_values
from ..structure.kernels import FlatPlan, SliceEntry, build_flat_plans, hold_at_zero_, pad
from ..structure.slices import PRODUCER

__all__ = ["ElementMasks", "MASKABLE_TYPES"]

MASKABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Layers whose ``weight`` elements can be masked."""


class ElementMasks:
    """Element masks over the weights of ``model``'s Linear and Conv layers.

    Args:
        model: The network; its weights are read and written in place.
        example_inputs: Inputs (batch 1 is enough; a tensor, a tuple, or a dict of keyword inputs) for
            the MACs of each weight (its output positions per sample); None counts one MAC per weight.
        layers: Names of the layers to mask (default: every Linear / Conv layer).
        ignored_layers: Names of layers left dense (e.g. the classifier).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> m = ElementMasks(net)
        >>> m.num_structures, m.names
        (18, ['0', '2'])
        >>> m.set_pruned([0, 1, 2]); m.zero_pruned_()
        >>> bool((net[0].weight[0, :3] == 0).all()), round(m.sparsity(), 3)
        (True, 0.167)
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any = None,
        *,
        layers: Iterable[str] | None = None,
        ignored_layers: Iterable[str] = (),
    ) -> None:
        modules = dict(model.named_modules())
        ignored = set(ignored_layers)
        unknown = sorted((set(layers or ()) | ignored) - set(modules))
        if unknown:
            raise ValueError(f"no layer named {unknown} in the model")
        chosen = (
            list(layers) if layers is not None else [n for n, m in modules.items() if isinstance(m, MASKABLE_TYPES)]
        )
        chosen = [n for n in chosen if n not in ignored]
        for name in chosen:
            if not isinstance(modules[name], MASKABLE_TYPES):
                raise ValueError(f"layer {name!r} is a {type(modules[name]).__name__}; masks cover Linear and Conv")
        if not chosen:
            raise ValueError("no Linear or Conv layer to mask")
        self.model = model
        self.names: list[str] = chosen
        self.modules: list[nn.Module] = [modules[n] for n in chosen]
        self.weights: list[nn.Parameter] = [m.weight for m in self.modules]  # type: ignore[misc]
        sizes = [w.numel() for w in self.weights]
        self.num_structures = sum(sizes)
        self.starts: list[int] = torch.tensor([0, *sizes]).cumsum(0).tolist()
        self.layer_of = torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(sizes)])
        self.pruned = torch.zeros(self.num_structures, dtype=torch.bool)
        self.macs_per_weight = self._macs_per_weight(example_inputs)
        self._version = 0
        self._cache: dict = {}

    # ------------------------------------------------------------------ layout
    @property
    def num_groups(self) -> int:
        """Number of masked layers."""
        return len(self.names)

    @property
    def device(self) -> torch.device:
        """Where the masked weights live."""
        return self.weights[0].device

    def span(self, layer: int) -> slice:
        """Unit ids of ``layer`` (its weight's elements in flatten order)."""
        return slice(self.starts[layer], self.starts[layer + 1])

    def group_name(self, unit: int) -> str:
        """Name of the layer that holds weight ``unit``."""
        return self.names[int(self.layer_of[unit])]

    def per_weight(self, values: Iterable[torch.Tensor]) -> torch.Tensor:
        """One tensor per layer (shaped like its weight) flattened into ``[S]`` in unit order."""
        return torch.cat([v.detach().reshape(-1).float().to(self.device) for v in values])

    def unflatten(self, values: torch.Tensor) -> list[torch.Tensor]:
        """``[S]`` per-unit values split back into one tensor per layer, shaped like its weight."""
        return [values[self.span(i)].view(w.shape) for i, w in enumerate(self.weights)]

    # ------------------------------------------------------------------ mask
    @property
    def mask_version(self) -> int:
        """Bumped by every :meth:`set_pruned` / :meth:`set_mask`."""
        return self._version

    def set_pruned(self, ids: torch.Tensor | Sequence[int], value: bool = True) -> None:
        """Mark weights as held at zero (or release them)."""
        self.pruned[torch.as_tensor(ids, dtype=torch.long).cpu()] = value
        self._version += 1

    def set_mask(self, pruned: torch.Tensor) -> None:
        """Replace the whole ``[S]`` pruned mask."""
        if pruned.shape != self.pruned.shape:
            raise ValueError(f"mask has shape {tuple(pruned.shape)}, expected ({self.num_structures},)")
        self.pruned.copy_(pruned.bool().cpu())
        self._version += 1

    def keep_vector(self) -> torch.Tensor:
        """Float ``[S + 1]``: 0 for pruned weights, 1 otherwise (last: the padding slot)."""
        key = ("keep", self.device)
        cached = self._cache.get(key)
        if cached is None or cached[0] != self._version:
            cached = self._cache[key] = (self._version, pad((~self.pruned).float(), 1.0).to(self.device))
        return cached[1]

    def masks(self) -> dict[str, torch.Tensor]:
        """Per layer, the bool keep mask shaped like its weight (True: kept)."""
        return dict(zip(self.names, self.unflatten(~self.pruned)))

    # ------------------------------------------------------------------ element passes
    def flat_plans(self, role: str | None = PRODUCER) -> list[FlatPlan]:
        """One element-wise plan over every masked weight (cached per device and layout)."""
        key = ("plans", self.device)
        plans = self._cache.get(key)
        if plans is None or not all(p.matches_layout() for p in plans):
            entries = [
                SliceEntry(w, None, torch.arange(self.starts[i], self.starts[i + 1]).view(w.shape))
                for i, w in enumerate(self.weights)
            ]
            plans = self._cache[key] = build_flat_plans(entries, self.num_structures, self.device)
        return plans

    def _sumsq(self, source: str, layers: Iterable[int] | None) -> torch.Tensor:
        out = torch.zeros(self.num_structures + 1, device=self.device)
        for plan in self.flat_plans():
            plan.add_sumsq_(out, source)
        out = out[: self.num_structures]
        if layers is None:
            return out
        chosen = torch.zeros(self.num_groups, dtype=torch.bool)
        chosen[list(layers)] = True
        return torch.where(chosen[self.layer_of].to(out.device), out, torch.zeros_like(out))

    def producer_norms(self, layers: Iterable[int] | None = None) -> torch.Tensor:
        """``|w|`` of every weight, ``[S]`` (``layers``: only these, others 0)."""
        return self._sumsq("weight", layers).sqrt()

    def grad_norms(self, layers: Iterable[int] | None = None) -> torch.Tensor:
        """``|dL/dw|`` of every weight, ``[S]`` (0 where no gradient)."""
        return self._sumsq("grad", layers).sqrt()

    @torch.no_grad()
    def scale_(self, factors: torch.Tensor, *, role: str | None = PRODUCER) -> None:
        """Multiply every weight by its factor (the decay's rescale)."""
        padded = pad(factors.to(self.device, torch.float32), 1.0)
        for plan in self.flat_plans():
            plan.mul_(plan.params, plan.gather(padded))

    @torch.no_grad()
    def zero_pruned_(self, optimizer: torch.optim.Optimizer | None = None, grads: bool = True) -> None:
        """Hold pruned weights at exactly zero: values, gradients and the optimizer's per-element state."""
        if not self.pruned.any():
            return
        keep, version = self.keep_vector(), ("mask", self._version)
        for plan in self.flat_plans():
            factors = partial(plan.gather, keep, "keep", version)
            hold_at_zero_(plan, factors=factors, grads=grads, optimizer=optimizer)

    # ------------------------------------------------------------------ cost and report
    def _macs_per_weight(self, example_inputs: Any) -> torch.Tensor:
        positions = [1.0] * self.num_groups
        if example_inputs is not None:
            inputs = as_inputs(example_inputs)
            batch = input_values(inputs)[0].shape[0]

            def hook(i: int):  # type: ignore[no-untyped-def]
                def record(module: nn.Module, _args: object, out: torch.Tensor) -> None:
                    per_sample = out.numel() / batch
                    channels = out.shape[1] if not isinstance(module, nn.Linear) else out.shape[-1]
                    positions[i] = per_sample / channels

                return record

            handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(self.modules)]
            try:
                with torch.no_grad():
                    call_model(self.model, inputs)
            finally:
                for h in handles:
                    h.remove()
        return torch.tensor(positions, dtype=torch.float64)[self.layer_of]

    def macs(self, pruned: torch.Tensor | None = None) -> float:
        """MACs of the masked layers when ``pruned`` (default: the current mask) is skipped."""
        held = self.pruned if pruned is None else pruned.cpu()
        return float(self.macs_per_weight[~held].sum())

    def params(self, pruned: torch.Tensor | None = None) -> float:
        """Masked-layer weights kept (``pruned`` default: the current mask)."""
        held = self.pruned if pruned is None else pruned.cpu()
        return float((~held).sum())

    def sparsity(self, pruned: torch.Tensor | None = None) -> float:
        """Fraction of the masked weights held at zero."""
        return 1.0 - self.params(pruned) / self.num_structures

    def layer_sparsity(self) -> list[dict]:
        """One row per masked layer: name, weight shape, weights, pruned count, sparsity."""
        rows = []
        for i, (name, w) in enumerate(zip(self.names, self.weights)):
            pruned = int(self.pruned[self.span(i)].sum())
            rows.append(
                {
                    "layer": name,
                    "shape": list(w.shape),
                    "weights": w.numel(),
                    "pruned": pruned,
                    "sparsity": pruned / w.numel(),
                }
            )
        return rows
