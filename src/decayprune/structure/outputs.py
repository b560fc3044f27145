"""Which channel groups reach a model output, and which modules the user keeps whole.

Pruning a channel that reaches an output changes the output's shape (10 classes become 7) or
its meaning; such groups are never prunable. The check works on the traced graph, not on the
output values: every tensor of the output (a tensor, tuple, list, dict or transformers
``ModelOutput``) is recorded while torch-pruning traces the model, and a group is protected
when one of its items is one of those output nodes, whatever ops (pooling, ``log_softmax``,
flatten) sit between the last layer and the output.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .graph import OPTYPE, DependencyGraph, Group, is_out_channel_handler, module_name

__all__ = ["OutputRecorder", "output_reason", "resolve_ignored"]


def output_tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in output_tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in output_tensors(item)]
    return []


class OutputRecorder:
    """An ``output_transform`` for torch-pruning's tracer that remembers the output tensors' grad_fns.

    Example:
        >>> rec = OutputRecorder()
        >>> out = rec({"a": torch.ones(2, requires_grad=True) * 2, "b": (torch.zeros(1),)})
        >>> len(rec.grad_fns)
        1
    """

    def __init__(self) -> None:
        self.grad_fns: set[Any] = set()

    def __call__(self, out: Any) -> list[torch.Tensor]:
        tensors = output_tensors(out)
        self.grad_fns.update(t.grad_fn for t in tensors if t.grad_fn is not None)
        return tensors


def output_reason(group: Group, graph: DependencyGraph, grad_fns: set[Any]) -> str | None:
    """Why ``group`` must not be pruned because it reaches a model output, or None.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> rec = OutputRecorder()
        >>> g = DependencyGraph().build_dependency(net, torch.randn(1, 4), output_transform=rec)
        >>> def group(m): return g.get_pruning_group(m, g.get_pruner_of_module(m).prune_out_channels, [0])
        >>> output_reason(group(net[0]), g, rec.grad_fns) is None, output_reason(group(net[2]), g, rec.grad_fns)
        (True, "its channels are a model output (through '2')")
    """
    for item in group.items:
        target = item.dep.target
        if target.type == OPTYPE.OUTPUT or (target.grad_fn is not None and target.grad_fn in grad_fns):
            if target.type not in (OPTYPE.OUTPUT, OPTYPE.ELEMENTWISE):
                name = module_name(graph, target.module)
                if not is_out_channel_handler(graph, item.dep.handler) and target.type in (
                    OPTYPE.CONV,
                    OPTYPE.LINEAR,
                ):
                    continue  # the output layer's *inputs* are pruned: its output shape does not change
                return f"its channels are a model output (through '{name}')"
            return "its channels reach a model output"
    return None


def resolve_ignored(
    model: nn.Module,
    ignored_layers: Iterable[nn.Module | str] = (),
    ignored_types: Sequence[type[nn.Module] | str] = (),
) -> list[nn.Module]:
    """Modules kept whole: the given modules or module names, and every module of the given types.

    Types may be classes or class names (``"LayerNorm"``, ``"Conv1D"``), matched against each
    module's class and its bases.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
        >>> [type(m).__name__ for m in resolve_ignored(net, ["0"], ["LayerNorm"])]
        ['Linear', 'LayerNorm']
    """
    modules = dict(model.named_modules())
    out: list[nn.Module] = []
    unknown = []
    for entry in ignored_layers:
        if isinstance(entry, str):
            if entry not in modules:
                unknown.append(entry)
                continue
            entry = modules[entry]
        out.append(entry)
    if unknown:
        raise UserError(
            f"ignored layers name modules the model does not have: {unknown}; "
            f"module names look like {[n for n in list(modules)[1:4]]}"
        )
    classes = {t for t in ignored_types if not isinstance(t, str)}
    names = {t for t in ignored_types if isinstance(t, str)}
    seen_names = {c.__name__ for m in model.modules() for c in type(m).__mro__}
    missing = sorted(n for n in names if n not in seen_names)
    if missing:
        present = sorted({type(m).__name__ for m in model.modules()})
        raise UserError(f"ignored types {missing} match no module of the model; its module types: {present}")
    ids = {id(m) for m in out}
    for module in model.modules():
        mro = type(module).__mro__
        if (any(issubclass(type(module), c) for c in classes) or any(c.__name__ in names for c in mro)) and id(
            module
        ) not in ids:
            out.append(module)
            ids.add(id(module))
    return out
