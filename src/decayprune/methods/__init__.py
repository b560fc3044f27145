"""Base pruning methods: who is selected, when, and with which regulariser."""

from .base import PruningMethod, fill_to_budget, list_methods, method_class, register_method
from .depgraph import DepGraph, layer_normalize
from .magnitude import L1Filter, RandomSelection
from .scheduled import ScheduledMethod


def create_method(name: str, **options) -> PruningMethod:
    """Build a registered method by name with its options.

    Example:
        >>> create_method("depgraph", sparse_lambda=1e-4).sparse_lambda
        0.0001
    """
    cls = method_class(name)
    try:
        return cls(**options)
    except TypeError as err:
        raise ValueError(f"bad options for pruning method '{name}': {err}") from None


__all__ = [
    "PruningMethod",
    "ScheduledMethod",
    "DepGraph",
    "L1Filter",
    "RandomSelection",
    "create_method",
    "fill_to_budget",
    "layer_normalize",
    "list_methods",
    "method_class",
    "register_method",
]
