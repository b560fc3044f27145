"""Criteria: importance scores over structures, kept apart from schedules and zeroing policies.

A criterion answers one question: how important is each structure (channel group) now?
Low scores are pruned first. It declares what it needs (:data:`Need`): the weights only,
calibration data (forward passes), gradients (backward passes) or Hessian-vector products;
the Pruner checks at construction that what it needs is available. Scores of coupled slices
(residual partners, the norm layer after a conv, the next layer's input columns) reduce to
one value per structure; each criterion's docstring says which reduction it uses.

Example:
    >>> @register_criterion("doc_ones")
    ... class Ones(Criterion):
    ...     '''Every structure scores 1 (a do-nothing example).'''
    ...     def score(self, ctx):
    ...         return torch.ones(ctx.structures.num_structures)
    >>> "doc_ones" in list_criteria()
    True
    >>> CRITERIA.remove("doc_ones")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from ..config.messages import validation_problems
from ..registry import CRITERIA

if TYPE_CHECKING:
    from .view import ScoringView

__all__ = ["Criterion", "Need", "create_criterion", "criterion_class", "list_criteria", "register_criterion"]

Need = Literal["weights", "data", "grads", "hvp"]


class NoOptions(BaseModel):
    """The options of a criterion or method that takes none (any key is an error)."""

    model_config = ConfigDict(extra="forbid")


class Criterion:
    """Base class: subclasses implement :meth:`score` and may declare ``Options`` and ``needs``.

    Class attributes:
        needs: What :meth:`score` uses; ``"data"``, ``"grads"`` and ``"hvp"`` need calibration
            batches (``Pruner(..., calibration_data=...)``).
        summary: One line for ``decayprune criteria``.
        paper: The work the criterion comes from.
        Options: A pydantic model of the keyword options (validated when a config loads).
    """

    name: ClassVar[str] = "base"
    needs: ClassVar[frozenset[str]] = frozenset({"weights"})
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""

    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, **options: Any) -> None:
        try:
            self.options: Any = self.Options(**options)  # the subclass's Options (typed there)
        except ValidationError as exc:
            raise ValueError(
                f"bad options for criterion {self.name!r}: {'; '.join(validation_problems(exc, self.Options))}"
            ) from None

    @property
    def needs_data(self) -> bool:
        """True when scoring runs passes over calibration batches."""
        return bool(self.needs & {"data", "grads", "hvp"})

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        """Importance of every structure, a float tensor of shape ``[S]`` on the CPU (low = prune first)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (e.g. running averages); tensors and JSON values."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""


def register_criterion(name: str) -> Callable[[type[Criterion]], type[Criterion]]:
    """Class decorator adding a criterion to :data:`decayprune.registry.CRITERIA`."""
    register = CRITERIA.register(name)

    def wrap(cls: type[Criterion]) -> type[Criterion]:
        cls.name = name
        if not cls.summary:
            cls.summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        return register(cls)

    return wrap


def list_criteria() -> list[str]:
    """Names of the registered criteria.

    Example:
        >>> {"group_norm", "l1_filter", "random"} <= set(list_criteria())
        True
    """
    return CRITERIA.names()


def criterion_class(name: str) -> type[Criterion]:
    """The registered criterion class ``name`` (a ``ValueError`` listing the allowed names otherwise)."""
    if name not in CRITERIA:
        raise ValueError(CRITERIA.unknown_message(name))
    return CRITERIA.get(name)


def create_criterion(name: str, **options: Any) -> Criterion:
    """Build a registered criterion with its options.

    Example:
        >>> create_criterion("group_norm", reduction="sum").options.reduction
        'sum'
    """
    return criterion_class(name)(**options)
