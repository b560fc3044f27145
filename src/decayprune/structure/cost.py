"""Analytic MACs/parameter model of a masked network, and the budget cost abstraction.

A pruning budget is a :class:`BudgetCost`: the cost of the model once a mask of structures is
gone, in one unit. :class:`MacsCost` counts MACs (this module's :class:`CostModel`);
:class:`~decayprune.structure.latency_cost.LatencyCost` predicts latency on a device from a
measured per-layer table. Methods compare ``ctx.cost_of(mask)`` with ``ctx.budget()`` and never
need to know which one is in force.

Measuring the real cost of a candidate mask needs a physical copy of the model; pruning
methods ask for it thousands of times. This model records, once, each layer's output size
and which parameter dimensions carry its input/output channels; the cost of any mask is
then a sum over layers of (alive inputs x alive outputs x per-position work). It counts the
same terms as torch-pruning's op counter for conv, linear and norm layers. Activations and
pooling are measured once on the full model (the real counter) and scaled with the square
root of the analytic ratio; functional matmuls (attention scores, counted by flop_counter) are
taken as constant; after compaction the estimate was within 0.1% of the real count
on resnet56, vgg16, mobilenetv2_cifar and concat_cnn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn as nn

from ..measure import count_cost
from ..measure.inputs import ExampleInputs, call_model
from .hf_layers import conv1d_type

if TYPE_CHECKING:
    from .units import StructureSet

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)
# Pseudo-dim keying the input channels of a grouped (non-depthwise) conv; see slices.grouped_conv_inputs.
_GROUPED_IN = -1


@dataclass
class _LayerCost:
    module: nn.Module
    kind: str  # "conv", "linear", "norm"
    out_key: tuple[int, int] | None  # (id(param), dim) carrying output channels
    in_key: tuple[int, int] | None  # (id(param), dim) carrying input channels
    out_channels: int
    in_channels: int
    positions: int  # output positions per channel (spatial size or tokens)
    input_shape: tuple[int, ...]  # shape of the (first) input of one call, batch included
    per_position: int  # kernel elements (conv) / 1
    groups: int
    has_bias: bool
    affine: bool


class BudgetCost(Protocol):
    """The cost a pruning budget counts: of the model once the ``pruned`` structures are gone.

    Attributes:
        kind: ``"macs"`` or ``"latency"``.
        unit: What one unit of the cost is (``"MACs"``, ``"ms"``).
    """

    kind: str
    unit: str

    def __call__(self, pruned: torch.Tensor) -> float:
        """Cost with the structures of the bool mask ``pruned`` removed."""
        ...


class MacsCost:
    """The MACs of a :class:`StructureSet` as a :class:`BudgetCost` (its :meth:`~StructureSet.macs`).

    Example:
        >>> import torch.nn as nn
        >>> from decayprune.structure import StructureSet
        >>> s = StructureSet(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), torch.zeros(1, 4))
        >>> cost = MacsCost(s)
        >>> cost(torch.zeros(s.num_structures, dtype=torch.bool)) == s.macs(), cost.kind
        (True, 'macs')
    """

    kind = "macs"
    unit = "MACs"

    def __init__(self, structures: "StructureSet") -> None:
        self.structures = structures

    def __call__(self, pruned: torch.Tensor) -> float:
        return self.structures.macs(pruned)


class CostModel:
    """MACs and parameter counts of a model for any pruning mask of a :class:`StructureSet`."""

    def __init__(self, model: nn.Module, example_inputs: ExampleInputs, structures: "StructureSet") -> None:
        self.layers = self._record(model, example_inputs)
        self._dead_slices: dict[tuple[int, int], list[torch.Tensor]] = {}
        for _layer, s, ids in structures.parameter_slices():
            self._dead_slices.setdefault((id(s.param), s.dim), []).append(ids)
        for layer in structures.layers:
            for weight, ids in layer.grouped_inputs:
                self._dead_slices.setdefault((id(weight), _GROUPED_IN), []).append(ids)
        all_params = sum(p.numel() for p in model.parameters())
        self._other_params = all_params - sum(
            self._params_of(lc, lc.out_channels, lc.in_channels) for lc in self.layers
        )
        self._analytic_full = float(self._analytic_macs(torch.zeros(structures.num_structures, dtype=torch.bool)))
        # Terms the analytic sum leaves out (activations, pooling) measured once on the full model;
        # they shrink with the channels, modelled as the square root of the analytic ratio. Matmuls
        # outside counted modules (attention scores; added by flop_counter) are kept constant: the
        # layers decayprune prunes do not feed them (attention projections are refused).
        counted = count_cost(model, example_inputs)
        self._functional = float(counted.uncounted_macs)
        self._untracked = max(0.0, float(counted.macs) - self._functional - self._analytic_full)
        self.full_macs = self.macs(torch.zeros(structures.num_structures, dtype=torch.bool))

    @staticmethod
    def _record(model: nn.Module, example_inputs: ExampleInputs) -> list[_LayerCost]:
        shapes: dict[nn.Module, tuple[torch.Size, tuple[int, ...]]] = {}

        def record(mod: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else out
            shapes.setdefault(mod, (out.shape, tuple(first.shape)))

        attention: dict[nn.Module, tuple[int, ...]] = {}

        def record_mha(mod: nn.Module, args: tuple, kwargs: dict, _out: object) -> None:
            query = args[0] if args else kwargs.get("query")
            if isinstance(query, torch.Tensor):
                attention.setdefault(mod, tuple(query.shape))

        hooks = [
            m.register_forward_hook(record)
            for m in model.modules()
            if isinstance(m, _CONV + _NORM + (nn.Linear,) + _conv1d())
        ]
        hooks += [
            m.register_forward_hook(record_mha, with_kwargs=True)
            for m in model.modules()
            if isinstance(m, nn.MultiheadAttention)
        ]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                call_model(model, example_inputs)
        finally:
            for h in hooks:
                h.remove()
            model.train(was_training)
        layers = []
        for module, (shape, input_shape) in shapes.items():
            layers.append(_describe(module, shape, input_shape))
        for module, query_shape in attention.items():
            assert isinstance(module, nn.MultiheadAttention)
            layers.extend(_mha_layers(module, query_shape))
        return layers

    def prunable_dims(self, layer: _LayerCost) -> tuple[bool, bool]:
        """Whether pruning can change ``layer``'s output and input channel counts."""
        out = layer.out_key is not None and layer.out_key in self._dead_slices
        inp = out if layer.kind == "depthwise" else layer.in_key is not None and layer.in_key in self._dead_slices
        return out, inp

    def widths(self, pruned: torch.Tensor) -> list[tuple[int, int]]:
        """``(alive out, alive in)`` channels of every recorded layer (order of :attr:`layers`) under ``pruned``."""
        pruned = pruned.cpu()
        return [self._counts(lc, pruned) for lc in self.layers]

    def _alive(self, key: tuple[int, int] | None, total: int, pruned: torch.Tensor) -> int:
        if key is None or key not in self._dead_slices:
            return total
        dead = sum(int(pruned[ids].sum()) for ids in self._dead_slices[key])
        return total - dead

    def _counts(self, layer: _LayerCost, pruned: torch.Tensor) -> tuple[int, int]:
        out_alive = self._alive(layer.out_key, layer.out_channels, pruned)
        in_alive = out_alive if layer.kind == "depthwise" else self._alive(layer.in_key, layer.in_channels, pruned)
        return out_alive, in_alive

    @staticmethod
    def _macs_of(layer: _LayerCost, out_alive: int, in_alive: int) -> int:
        if layer.kind == "norm":
            return out_alive * layer.positions * (2 if layer.affine else 1)
        bias = out_alive * layer.positions if layer.has_bias else 0
        if layer.kind == "depthwise":
            return out_alive * layer.per_position * layer.positions + bias
        in_per_group = in_alive // layer.groups if layer.groups > 1 else in_alive
        return in_per_group * out_alive * layer.per_position * layer.positions + bias

    @staticmethod
    def _params_of(layer: _LayerCost, out_alive: int, in_alive: int) -> int:
        if layer.kind == "norm":
            return 2 * out_alive if layer.affine else 0
        bias = out_alive if layer.has_bias else 0
        if layer.kind == "depthwise":
            return out_alive * layer.per_position + bias
        in_per_group = in_alive // layer.groups if layer.groups > 1 else in_alive
        return in_per_group * out_alive * layer.per_position + bias

    def _analytic_macs(self, pruned: torch.Tensor) -> float:
        pruned = pruned.cpu()
        return float(sum(self._macs_of(lc, *self._counts(lc, pruned)) for lc in self.layers))

    def macs(self, pruned: torch.Tensor) -> float:
        """Estimated MACs per input with ``pruned`` structures removed (calibrated on the full model)."""
        analytic = self._analytic_macs(pruned)
        ratio = analytic / self._analytic_full if self._analytic_full > 0 else 1.0
        return analytic + self._untracked * ratio**0.5 + self._functional

    def params(self, pruned: torch.Tensor) -> float:
        """Parameters with ``pruned`` structures removed."""
        pruned = pruned.cpu()
        return float(self._other_params + sum(self._params_of(lc, *self._counts(lc, pruned)) for lc in self.layers))


def allowed_kept(layer, width_multiple: int) -> int:
    """The step, in structures, of the kept counts allowed in ``layer`` (0: the layer may not be pruned).

    A layer may keep ``k`` structures when ``k`` is a positive multiple of the step (so its kept
    channels are a multiple of ``width_multiple``) or all of them. A layer with fewer channels
    than ``width_multiple`` is left whole.

    Example:
        >>> from types import SimpleNamespace as L
        >>> allowed_kept(L(num_channels=64, size=64), 8), allowed_kept(L(num_channels=6, size=6), 8)
        (8, 0)
        >>> allowed_kept(L(num_channels=64, size=16), 8)   # 4 channels per structure: steps of 2
        2
    """
    if width_multiple <= 1:
        return 1
    if layer.num_channels < width_multiple:
        return 0
    per = max(layer.num_channels // layer.size, 1)
    return width_multiple // math.gcd(width_multiple, per)


def _conv1d() -> tuple[type[nn.Module], ...]:
    conv1d = conv1d_type()
    return (conv1d,) if conv1d is not None else ()


def _mha_layers(module: nn.MultiheadAttention, query_shape: tuple[int, ...]) -> list[_LayerCost]:
    """The packed input projection and the output projection of an ``nn.MultiheadAttention``
    (computed functionally, so no module hook sees them) as linear layers, per token of the query."""
    batch = 1 if len(query_shape) < 3 else query_shape[0] if module.batch_first else query_shape[1]
    tokens = math.prod(query_shape[:-1]) // max(batch, 1)
    out = module.out_proj
    projections: list[tuple[nn.Module, torch.Tensor, int, int, bool]] = [
        (out, out.weight, module.embed_dim, module.embed_dim, out.bias is not None)
    ]
    if module.in_proj_weight is not None:
        weight = module.in_proj_weight
        projections.insert(0, (module, weight, weight.shape[0], weight.shape[1], module.in_proj_bias is not None))
    return [
        _LayerCost(
            module=owner,
            kind="linear",
            out_key=(id(weight), 0),
            in_key=(id(weight), 1),
            out_channels=int(cout),
            in_channels=int(cin),
            positions=tokens,
            input_shape=query_shape,
            per_position=1,
            groups=1,
            has_bias=has_bias,
            affine=False,
        )
        for owner, weight, cout, cin, has_bias in projections
    ]


def _describe(module: nn.Module, shape: torch.Size, input_shape: tuple[int, ...]) -> _LayerCost:
    weight = getattr(module, "weight", None)
    if isinstance(module, _conv1d()) and isinstance(weight, torch.Tensor):  # transformers' Conv1D: weight [in, out]
        return _LayerCost(
            module=module,
            kind="linear",
            out_key=(id(weight), 1),
            in_key=(id(weight), 0),
            out_channels=weight.shape[1],
            in_channels=weight.shape[0],
            positions=math.prod(shape[:-1]) // shape[0] if len(shape) > 1 else 1,
            input_shape=input_shape,
            per_position=1,
            groups=1,
            has_bias=getattr(module, "bias", None) is not None,
            affine=False,
        )
    if isinstance(module, _CONV):
        transposed = bool(getattr(module, "transposed", False))
        depthwise = module.groups == module.out_channels and module.out_channels > 1
        return _LayerCost(
            module=module,
            kind="depthwise" if depthwise else "conv",
            out_key=(id(weight), 1 if transposed else 0),
            in_key=(id(weight), _GROUPED_IN) if module.groups > 1 else (id(weight), 0 if transposed else 1),
            out_channels=module.out_channels,
            in_channels=module.in_channels,
            positions=math.prod(shape[2:]),
            input_shape=input_shape,
            per_position=math.prod(module.kernel_size),
            groups=module.groups,
            has_bias=module.bias is not None,
            affine=False,
        )
    if isinstance(module, nn.Linear):
        return _LayerCost(
            module=module,
            kind="linear",
            out_key=(id(weight), 0),
            in_key=(id(weight), 1),
            out_channels=module.out_features,
            in_channels=module.in_features,
            positions=math.prod(shape[:-1]) // shape[0] if len(shape) > 1 else 1,
            input_shape=input_shape,
            per_position=1,
            groups=1,
            has_bias=module.bias is not None,
            affine=False,
        )
    if isinstance(module, nn.LayerNorm):
        channels = module.normalized_shape[-1]
        affine = module.elementwise_affine
        dim = len(weight.shape) - 1 if weight is not None else 0
    else:
        channels = int(module.num_features if hasattr(module, "num_features") else module.num_channels)  # type: ignore[arg-type]
        affine = bool(getattr(module, "affine", False))
        dim = 0
    numel = math.prod(shape[1:])
    return _LayerCost(
        module=module,
        kind="norm",
        out_key=(id(weight), dim) if weight is not None else None,
        in_key=None,
        out_channels=channels,
        in_channels=channels,
        positions=numel // channels,
        input_shape=input_shape,
        per_position=1,
        groups=1,
        has_bias=False,
        affine=affine,
    )
