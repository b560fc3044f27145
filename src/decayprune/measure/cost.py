"""Count MACs and parameters of a model: Torch-Pruning's op counter, completed by ``torch.utils.flop_counter``.

The default counter (:data:`DEFAULT_COUNTER`, ``"torch_pruning+flop_counter"``) is Torch-Pruning's
module counter plus the matrix products it cannot see: ``FlopCounterMode`` counts every
matmul-like aten op (``mm``, ``addmm``, ``bmm``, convolutions, scaled-dot-product attention) at
the dispatcher; the products that ran outside a module Torch-Pruning counts (attention scores
``q @ k.T``, ``attn @ v``, ``F.linear`` / ``F.conv2d`` calls, transformers' ``Conv1D``) are added,
one MAC per two FLOPs. ``counter="torch_pruning"`` gives the module counter alone, and
``counter="flop_counter"`` flop_counter's matmul MACs alone (no norms, activations, pooling or
biases). :attr:`ModelCost.counter` names the counter used; result files record it.

What is counted (``torch_pruning.utils.count_ops_and_params``, checked against hand formulas
in the tests): per call of a module of these types, conv layers (incl. transposed and grouped /
depthwise) count ``k_h * k_w * in/groups * out * H_out * W_out`` plus one per output element for
a bias; ``nn.Linear`` counts ``in * out`` per row plus ``out`` for a bias; norm layers count one
op per input element (two when affine); activations modules (ReLU, ReLU6, GELU, ...) and pooling
modules count one per element. This matches how DepGraph reports MACs for CIFAR models.

Known gaps of the module counter (documented rather than hidden):
  * functional ops are free: ``F.relu``, residual ``+``, ``torch.cat``, ``x.mean``,
    ``F.adaptive_avg_pool2d``, matmuls written as ``@`` — only ``nn.Module`` calls are counted
    (the default counter adds the functional matmuls back, not the elementwise ops);
  * a module whose type is unknown to the counter counts zero; subclasses of counted types
    (e.g. a custom ``nn.Conv2d`` subclass) are counted here as their nearest counted base class
    — we register them with the counter before each call, which the plain counter does not do;
  * the linear-bias term is added once per call rather than once per row, so with batch > 1
    it is slightly under-counted; pass batch-1 inputs for exact numbers;
  * the per-sample average divides by the length of the first positional input; with dict
    (keyword-only) inputs the batch is taken as 1 and the counter prints a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode
from torch_pruning.utils import op_counter

from .inputs import call_model

__all__ = ["COUNTERS", "DEFAULT_COUNTER", "ModelCost", "count_cost", "flop_counter_macs"]

Counter = Literal["torch_pruning+flop_counter", "torch_pruning", "flop_counter"]
#: The MACs counters :func:`count_cost` offers.
COUNTERS: tuple[str, ...] = ("torch_pruning+flop_counter", "torch_pruning", "flop_counter")
#: The counter used unless another is asked for (and the one result files name).
DEFAULT_COUNTER: Counter = "torch_pruning+flop_counter"


@dataclass(frozen=True)
class ModelCost:
    """Cost of a model: multiply-accumulates of one forward pass per sample, and parameters.

    Attributes:
        macs: MACs per input sample (see :func:`count_cost`).
        params: Total number of parameter elements.
        counter: The counter that produced ``macs`` (one of :data:`COUNTERS`).
        uncounted_macs: With the default counter, the matmul MACs the module counter missed and
            flop_counter added (included in ``macs``).
    """

    macs: int
    params: int
    counter: str = DEFAULT_COUNTER
    uncounted_macs: int = 0


def count_cost(
    model: nn.Module, example_inputs: torch.Tensor | tuple | list | dict, counter: Counter = DEFAULT_COUNTER
) -> ModelCost:
    """Count MACs (per sample) and parameters of ``model`` at ``example_inputs``.

    The counter runs one forward pass on a deep copy of the model in eval mode under
    ``torch.no_grad``; the model itself (weights, training flag, hooks) is left untouched.
    MACs are averaged over the batch, so they are per sample; callers should pass a batch of
    one (e.g. ``torch.zeros(1, 3, 32, 32)``), which is exact (see the module notes).
    ``params`` is the sum of ``numel`` over ``model.parameters()`` (buffers excluded).

    Args:
        model: Any ``nn.Module``.
        example_inputs: A tensor (called as ``model(x)``), a tuple/list (``model(*x)``) or a
            dict (``model(**x)``), on the model's device.
        counter: ``"torch_pruning+flop_counter"`` (default), ``"torch_pruning"`` or ``"flop_counter"``
            (see the module notes).

    Returns:
        A :class:`ModelCost`.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module`` or the inputs have an unsupported type.

    Example:
        >>> import torch, torch.nn as nn
        >>> cost = count_cost(nn.Linear(4, 3), torch.zeros(1, 4))
        >>> cost.macs, cost.params, cost.counter
        (15, 15, 'torch_pruning+flop_counter')
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_inputs, (torch.Tensor, tuple, list, dict)):
        raise TypeError(
            "example_inputs must be a tensor, a tuple/list of positional inputs or a dict of keyword "
            f"inputs, got {type(example_inputs).__name__}"
        )
    if counter not in COUNTERS:
        raise ValueError(f"counter must be one of {', '.join(COUNTERS)}, got {counter!r}")
    if isinstance(example_inputs, list):
        example_inputs = tuple(example_inputs)
    params = int(sum(p.numel() for p in model.parameters()))
    custom = _subclass_hooks(model)
    if counter == "flop_counter":
        total, _ = _flop_counts(model, example_inputs, custom)
        return ModelCost(macs=total, params=params, counter=counter)
    try:
        op_counter.CUSTOM_MODULES_MAPPING = custom
        macs, _ = op_counter.count_ops_and_params(model, example_inputs)
    finally:
        op_counter.CUSTOM_MODULES_MAPPING = {}
    if counter == "torch_pruning":
        return ModelCost(macs=int(round(macs)), params=params, counter=counter)
    _, missed = _flop_counts(model, example_inputs, custom)
    return ModelCost(macs=int(round(macs)) + missed, params=params, counter=counter, uncounted_macs=missed)


def flop_counter_macs(model: nn.Module, example_inputs: torch.Tensor | tuple | list | dict) -> int:
    """MACs per sample of the matmul-like ops ``torch.utils.flop_counter`` counts (FLOPs / 2).

    Example:
        >>> import torch, torch.nn as nn
        >>> flop_counter_macs(nn.Linear(4, 3), torch.zeros(2, 4))   # 4 x 3 per row, the bias not counted
        12
    """
    if isinstance(example_inputs, list):
        example_inputs = tuple(example_inputs)
    return _flop_counts(model, example_inputs, _subclass_hooks(model))[0]


def _flop_counts(model: nn.Module, example_inputs: Any, custom: dict[type, Any]) -> tuple[int, int]:
    """(all matmul MACs, those outside modules the module counter counts), per sample."""
    counted = tuple(op_counter.MODULES_MAPPING) + tuple(custom)
    root = type(model).__name__
    covered: list[str] = []
    outer: tuple[str, ...] = ()
    for name, module in model.named_modules():  # parents come before their children
        if isinstance(module, counted) and not (outer and name.startswith(outer)):
            covered.append(f"{root}.{name}" if name else root)
            outer = outer + (f"{name}.",) if name else ("",)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as mode:
            call_model(model, example_inputs)
    finally:
        model.train(was_training)
    counts = mode.get_flop_counts()
    total = sum(counts.get("Global", {}).values())
    inside = sum(sum(counts.get(name, {}).values()) for name in covered)
    batch = _batch_size(example_inputs)
    return int(total // 2 // batch), int(max(total - inside, 0) // 2 // batch)


def _batch_size(example_inputs: Any) -> int:
    first = example_inputs
    if isinstance(first, dict):
        return 1
    if isinstance(first, tuple):
        first = first[0] if first else None
    return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() > 0 else 1


def _subclass_hooks(model: nn.Module) -> dict[type, Any]:
    """Counter hooks for module types that subclass a counted type but are not counted by name."""
    known = op_counter.MODULES_MAPPING
    hooks: dict[type, Any] = {}
    for module in model.modules():
        cls = type(module)
        if cls in known or cls in hooks:
            continue
        for base in cls.__mro__[1:]:
            if base in known:
                hooks[cls] = known[base]
                break
    return hooks
