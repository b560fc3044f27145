"""Exact or refused: which channel groups compact to the same function as their masked model.

decayprune prunes by holding a structure's producer slices at zero and removing them at
compaction. That is exact only when a zero producer gives a zero channel *and* the channel's
absence changes nothing else. Two kinds of checks refuse the groups where it does not hold:

* :func:`static_reason` (always on, free): norms whose output for a zeroed channel is not zero
  or whose statistics mix channels (LayerNorm over the pruned features, BatchNorm without
  affine parameters), and GroupNorm layouts that whole groups cannot follow.
* :func:`find_inexact` (opt-in, ``verify=True``): an empirical test on a float64 copy with
  randomised weights and norm statistics. Half the structures of the candidate groups are
  zeroed, the copy is compacted, and the outputs before and after are compared; groups that
  fail (activations with f(0) != 0, reshapes into attention heads, ops the graph cannot
  follow, a compaction that raises) are isolated by bisection and refused with the reason.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..measure.inputs import call_model, map_inputs
from .graph import OPTYPE, DependencyGraph, Group, trace  # noqa: F401 (DependencyGraph: the examples)
from .heads import HeadGroup
from .hf_layers import customized_pruners
from .outputs import OutputRecorder, output_tensors

if TYPE_CHECKING:
    from .groups import ChannelGroup

__all__ = ["find_inexact", "gn_block", "output_error", "risk_reason", "static_reason"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_IN = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_RMS = tuple(t for t in (getattr(nn, "RMSNorm", None),) if t is not None)


def static_reason(group: Group, names: dict[nn.Module, str]) -> str | None:
    """Why a group cannot be pruned exactly, from its layer types alone (None: no objection).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
        >>> g = DependencyGraph().build_dependency(net, torch.randn(1, 4))
        >>> group = g.get_pruning_group(net[0], g.get_pruner_of_module(net[0]).prune_out_channels, [0])
        >>> static_reason(group, {m: n for n, m in net.named_modules()}).split(":")[0]
        "LayerNorm '1' normalises over these features"
    """
    for item in group.items:
        m = item.dep.target.module
        name = names.get(m, type(m).__name__)
        if isinstance(m, (nn.LayerNorm,) + _RMS):
            return (
                f"{type(m).__name__} '{name}' normalises over these features: a zeroed feature still counts "
                "in its statistics, so the masked and the compacted models would differ"
            )
        if isinstance(m, _BN) and not m.affine:
            return (
                f"BatchNorm '{name}' has no affine parameters: a zeroed channel comes out as "
                "-running_mean/std, not zero, so removing it would change the next layer"
            )
        if isinstance(m, nn.GroupNorm) and m.num_groups == 1:
            return (
                f"GroupNorm '{name}' has one group: every channel counts in its statistics (as in a LayerNorm), "
                "so removing a zeroed channel would change the others"
            )
        if isinstance(m, _IN) and m.track_running_stats and not m.affine:
            return (
                f"InstanceNorm '{name}' tracks running statistics without affine parameters: "
                "a zeroed channel is not zero"
            )
    return None


_RISKY_OPS = (
    "Sigmoid",
    "Hardsigmoid",
    "Exp",
    "Softplus",
    "Cos",
    "Log",
    "Softmax",
    "LogSoftmax",
    "Pow",
    "Erfc",
    "Rsqrt",
    "Reciprocal",
    "Div",
    "Mm",
    "Bmm",
    "Matmul",
    "Baddbmm",
    "Unknown",
    "Scaled",
    "Unbind",
    "Split",
    "Transpose",
    "Permute",
    "PixelShuffle",
    "PixelUnshuffle",
    "ChannelShuffle",
    "Roll",
    "Flip",
    "Gather",
    "Index",
)
_ATTENTION_NAME = ("attn", "attention", "query", "key", "value", "q_proj", "k_proj", "v_proj", "qkv", "in_proj")


def risk_reason(group: Group, slices: Sequence[Any] = ()) -> str | None:
    """Why a group deserves the empirical check (None: only ops known to compact exactly).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 2))
        >>> g = DependencyGraph().build_dependency(net, torch.randn(1, 4))
        >>> risk_reason(g.get_pruning_group(net[0], g.get_pruner_of_module(net[0]).prune_out_channels, [0]))
        'op SigmoidBackward0'
    """
    for item in group.items:
        target = item.dep.target
        if target.type == OPTYPE.PARAMETER:
            return "an unwrapped parameter"
        fn = type(target.grad_fn).__name__ if target.grad_fn is not None else ""
        if target.type in (
            OPTYPE.ELEMENTWISE,
            OPTYPE.RESHAPE,
            OPTYPE.UNBIND,
            OPTYPE.SPLIT,
            OPTYPE.CUSTOMIZED,
        ) and fn.startswith(_RISKY_OPS):
            return f"op {fn}"
        if target.type == OPTYPE.ELEMENTWISE and "Unknown" in str(target.module):
            return "an op the graph does not know"
    for s in slices:
        if any(part in s.name.lower() for part in _ATTENTION_NAME):
            return f"attention-like layer '{s.name}'"
    return None


def gn_block(group: Group, channels: int) -> tuple[int, str | None]:
    """Contiguous channels bound into one structure by the GroupNorms of a group (1 if none).

    Every GroupNorm must lose whole groups, so a structure is ``channels / num_groups``
    consecutive channels (the least common multiple over several GroupNorms).
    """
    block = 1
    for item in group.items:
        m = item.dep.target.module
        if isinstance(m, nn.GroupNorm) and m.num_groups > 1:
            if m.num_channels != channels:
                return 1, f"GroupNorm over {m.num_channels} channels sits on a group of {channels} (concat/split)"
            block = math.lcm(block, m.num_channels // m.num_groups)
    if channels % block:
        return 1, f"GroupNorm groups of {block} channels do not tile the {channels} channels"
    return block, None


def output_error(reference: Any, other: Any) -> float:
    """Largest relative error over the tensors of two outputs (``inf`` when their shapes differ).

    Example:
        >>> output_error({"a": torch.ones(3)}, {"a": torch.ones(3) * 1.5})
        0.5
    """
    ref, got = output_tensors(reference), output_tensors(other)
    if len(ref) != len(got):
        return math.inf
    worst = 0.0
    for a, b in zip(ref, got, strict=True):
        if a.shape != b.shape:
            return math.inf
        if not a.is_floating_point():
            worst = max(worst, 0.0 if torch.equal(a, b) else math.inf)
            continue
        diff = float((a.double() - b.double()).norm())
        worst = max(worst, diff / max(float(a.double().norm()), 1e-30))
    return worst


def _randomise_(model: nn.Module, generator: torch.Generator) -> None:
    """Generic weights and norm statistics, so no zero or unit default hides an inexact group."""
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.add_(
                    torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.1 * (p.std() if p.numel() > 1 else 1.0)
                    + 0.01 * torch.randn(p.shape, generator=generator, dtype=p.dtype)
                )
        for m in model.modules():
            mean, var = getattr(m, "running_mean", None), getattr(m, "running_var", None)
            if isinstance(mean, torch.Tensor) and isinstance(var, torch.Tensor):
                mean.copy_(torch.randn(mean.shape, generator=generator, dtype=mean.dtype) * 0.2)
                var.copy_(torch.rand(var.shape, generator=generator, dtype=var.dtype) + 0.5)


def _cast_inputs(inputs: Any) -> tuple | dict:
    return map_inputs(inputs, lambda x: x.double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x)


def _trial(
    model: nn.Module, example_inputs: Sequence[Any] | dict[str, Any], layers: Sequence[ChannelGroup], tolerance: float
) -> str | None:
    """Zero half the structures of ``layers`` in a float64 copy, compact it, compare. None: exact."""
    from .compaction import prune_layer_channels

    dup = copy.deepcopy(model).double().eval()
    _randomise_(dup, torch.Generator().manual_seed(0))
    inputs = _cast_inputs(example_inputs)
    try:
        graph = trace(dup, inputs, output_transform=OutputRecorder(), customized_pruners=customized_pruners(dup))
        modules = dict(dup.named_modules())
        plan = []
        with torch.no_grad():
            for layer in layers:
                local = torch.arange(0, layer.size, 2)
                if local.numel() >= layer.size:
                    local = local[:-1]
                plan.append((modules[layer.name], layer, local))
                dead = torch.zeros(layer.size + 1, dtype=torch.bool)
                dead[local] = True
                for s, ids in zip(layer.slices, layer.structure_ids, strict=True):
                    if s.role != "producer":
                        continue
                    rows = dead[layer.local(ids).clamp(0, layer.size)].nonzero().flatten()
                    dup.get_parameter(s.name).index_fill_(s.dim, s.positions[rows], 0.0)
            masked = call_model(dup, inputs)
        for root, layer, local in plan:
            if isinstance(layer, HeadGroup):
                layer.remove(dup, local)
            else:
                prune_layer_channels(graph, root, layer, local)
        with torch.no_grad():
            compacted = call_model(dup, inputs)
    except Exception as exc:  # a compaction or forward that fails is a refusal, with its message
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        return f"the compacted model fails ({type(exc).__name__}: {text})"
    err = output_error(masked, compacted)
    if err > tolerance:
        if math.isinf(err):
            return "compaction changes the shape of a model output"
        return f"masked and compacted outputs differ (relative error {err:.2e} > {tolerance:g})"
    return None


def find_inexact(
    model: nn.Module,
    example_inputs: Sequence[Any] | dict[str, Any],
    layers: Sequence[ChannelGroup],
    tolerance: float = 1e-6,
    trial: Callable[..., str | None] = _trial,
) -> dict[int, str]:
    """Index (in ``layers``) -> reason, for every layer group whose compaction is not exact.

    One trial covers all groups; only on failure are the groups split in halves (bisection),
    so an exact model costs one float64 copy, trace, compaction and two forwards.

    Example:
        >>> from decayprune.structure import StructureSet
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))
        >>> s = StructureSet(net, torch.randn(1, 4), verify=False)
        >>> [s.layers[i].name for i in find_inexact(net, s.example_inputs, s.layers)]
        ['0']
    """
    out: dict[int, str] = {}

    def search(idxs: list[int]) -> None:
        reason = trial(model, example_inputs, [layers[i] for i in idxs], tolerance)
        if reason is None:
            return
        if len(idxs) == 1:
            out[idxs[0]] = reason
            return
        half = len(idxs) // 2
        before = len(out)
        search(idxs[:half])
        search(idxs[half:])
        if len(out) == before:  # inexact only together: refuse them all
            for i in idxs:
                out[i] = f"{reason} (only together with other groups)"

    if layers:
        search(list(range(len(layers))))
    return out
