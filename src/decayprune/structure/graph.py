"""The one door to torch-pruning: its types, its tracer and the two private fields decayprune reads.

Every other module of decayprune reaches torch-pruning through the names below, so an upgrade of
torch-pruning (pinned ``<1.7``) is checked in one file: ``group._DG`` (the graph a group came
from) and ``graph._module2name`` (the graph's module names) are read here and nowhere else.

Example:
    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> g = trace(net, (torch.randn(1, 4),))
    >>> group = next(iter(g.get_all_groups(root_module_types=(nn.Linear,))))
    >>> graph_of(group) is g, module_name(g, net[0]), out_channels(g, net[0])
    (True, '0', 8)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torch_pruning import DependencyGraph
from torch_pruning.dependency import Group
from torch_pruning.ops import OPTYPE
from torch_pruning.pruner.function import BasePruningFunc

__all__ = [
    "OPTYPE",
    "BasePruningFunc",
    "DependencyGraph",
    "Group",
    "graph_of",
    "is_out_channel_handler",
    "module_name",
    "out_channels",
    "trace",
]


def trace(
    model: nn.Module,
    example_inputs: tuple | dict,
    *,
    output_transform: Callable[[Any], Any] | None = None,
    customized_pruners: dict | None = None,
) -> DependencyGraph:
    """torch-pruning's dependency graph of ``model`` (its tracer leaves the train/eval mode as it was).

    A transformers model is traced with its key/value cache off (``config.use_cache``): the cache
    concatenates head-shaped tensors the graph cannot count channels of, and is no output to prune.
    """
    was_training = model.training
    config: Any = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    if use_cache:
        config.use_cache = False
    try:
        return DependencyGraph().build_dependency(
            model,
            example_inputs=example_inputs,
            output_transform=output_transform,
            customized_pruners=customized_pruners,
            verbose=False,
        )
    finally:
        model.train(was_training)  # torch-pruning's tracer calls model.eval() and leaves it so
        if use_cache:
            config.use_cache = use_cache


def graph_of(group: Group) -> DependencyGraph:
    """The dependency graph ``group`` was taken from (torch-pruning keeps it private)."""
    return group._DG


def module_name(graph: DependencyGraph, module: nn.Module) -> str:
    """The qualified name the graph recorded for ``module`` (its class name when unknown)."""
    return graph._module2name.get(module, type(module).__name__)


def out_channels(graph: DependencyGraph, module: nn.Module) -> int | None:
    """Output channels of ``module`` as torch-pruning counts them (None: not a channel layer)."""
    return graph.get_pruner_of_module(module).get_out_channels(module)


def is_out_channel_handler(graph: DependencyGraph, handler: Any) -> bool:
    """True when a dependency's ``handler`` removes output channels (rather than input channels)."""
    return bool(graph.is_out_channel_pruning_fn(handler))
