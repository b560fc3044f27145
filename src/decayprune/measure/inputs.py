"""Example inputs of a model: one tensor, a tuple of positional inputs or a dict of keyword inputs.

Everything that runs a model on its example inputs (tracing, the cost model, exactness checks,
``check_model``, element masks) normalises them with :func:`as_inputs` and calls with :func:`call_model`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

__all__ = ["ExampleInputs", "as_inputs", "call_model", "input_values", "map_inputs", "split_inputs"]

ExampleInputs = tuple[Any, ...] | dict[str, Any]
"""Normalised example inputs: positional (``model(*inputs)``) or keyword (``model(**inputs)``)."""


def as_inputs(example_inputs: Any) -> ExampleInputs:
    """A tensor as a one-element tuple, a list as a tuple, a mapping as a dict (keyword inputs).

    Example:
        >>> import torch
        >>> as_inputs(torch.zeros(1)).__class__.__name__, as_inputs({"x": 1})
        ('tuple', {'x': 1})
    """
    if isinstance(example_inputs, Mapping):
        return dict(example_inputs)
    if isinstance(example_inputs, (list, tuple)):
        return tuple(example_inputs)
    return (example_inputs,)


def split_inputs(example_inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(positional args, keyword args)`` of example inputs."""
    inputs = as_inputs(example_inputs)
    return ((), inputs) if isinstance(inputs, dict) else (inputs, {})


def input_values(example_inputs: Any) -> tuple[Any, ...]:
    """Every input value, positional or keyword, in order.

    Example:
        >>> input_values({"a": 1, "b": 2}), input_values((3,))
        ((1, 2), (3,))
    """
    args, kwargs = split_inputs(example_inputs)
    return (*args, *kwargs.values())


def call_model(model: nn.Module | Callable[..., Any], example_inputs: Any) -> Any:
    """``model(**inputs)`` for a dict of keyword inputs, else ``model(*inputs)``.

    Example:
        >>> call_model(lambda a, b=0: a + b, {"a": 1, "b": 2}), call_model(lambda a: a, (3,))
        (3, 3)
    """
    args, kwargs = split_inputs(example_inputs)
    return model(*args, **kwargs)


def map_inputs(example_inputs: Any, fn: Callable[[Any], Any]) -> ExampleInputs:
    """The inputs with ``fn`` applied to each value (same kind: tuple or dict)."""
    inputs = as_inputs(example_inputs)
    if isinstance(inputs, dict):
        return {k: fn(v) for k, v in inputs.items()}
    return tuple(fn(v) for v in inputs)
