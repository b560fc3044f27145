"""Count MACs and parameters of a model with Torch-Pruning's op counter.

What is counted (``torch_pruning.utils.count_ops_and_params``, checked against hand formulas
in the tests): per call of a module of these types, conv layers (incl. transposed and grouped /
depthwise) count ``k_h * k_w * in/groups * out * H_out * W_out`` plus one per output element for
a bias; ``nn.Linear`` counts ``in * out`` per row plus ``out`` for a bias; norm layers count one
op per input element (two when affine); activations modules (ReLU, ReLU6, GELU, ...) and pooling
modules count one per element. This matches how DepGraph reports MACs for CIFAR models.

Known gaps (documented rather than hidden):
  * functional ops are free: ``F.relu``, residual ``+``, ``torch.cat``, ``x.mean``,
    ``F.adaptive_avg_pool2d``, matmuls written as ``@`` — only ``nn.Module`` calls are counted;
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
from typing import Any

import torch
import torch.nn as nn
from torch_pruning.utils import op_counter

__all__ = ["ModelCost", "count_cost"]


@dataclass(frozen=True)
class ModelCost:
    """Cost of a model: multiply-accumulates of one forward pass per sample, and parameters.

    Attributes:
        macs: MACs per input sample (see :func:`count_cost`).
        params: Total number of parameter elements.
    """

    macs: int
    params: int


def count_cost(model: nn.Module, example_inputs: torch.Tensor | tuple | list | dict) -> ModelCost:
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

    Returns:
        A :class:`ModelCost`.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module`` or the inputs have an unsupported type.

    Example:
        >>> import torch, torch.nn as nn
        >>> cost = count_cost(nn.Linear(4, 3), torch.zeros(1, 4))
        >>> cost.macs, cost.params
        (15, 15)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_inputs, (torch.Tensor, tuple, list, dict)):
        raise TypeError(
            "example_inputs must be a tensor, a tuple/list of positional inputs or a dict of keyword "
            f"inputs, got {type(example_inputs).__name__}"
        )
    if isinstance(example_inputs, list):
        example_inputs = tuple(example_inputs)
    custom = _subclass_hooks(model)
    try:
        op_counter.CUSTOM_MODULES_MAPPING = custom
        macs, _ = op_counter.count_ops_and_params(model, example_inputs)
    finally:
        op_counter.CUSTOM_MODULES_MAPPING = {}
    params = sum(p.numel() for p in model.parameters())
    return ModelCost(macs=int(round(macs)), params=int(params))


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
