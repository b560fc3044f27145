"""The method interface: lifecycle hooks against a :class:`~decayprune.methods.context.PruneContext`.

A *method* decides who is removed and when, and may regularise training, own the optimizer,
or add parameters (gates). It never zeroes anything itself: it returns targets from
:meth:`PruningMethod.select`, and the Pruner starts them through
:meth:`~decayprune.methods.PruneContext.start` (which refuses a start too late for the recovery
margin); the policy (``oneshot``, ``sp``, ``sp+sr``) decides how they reach zero. That is what lets
DPM plug into every method. Every hook is a no-op by default. A method reads the run through its
context's verbs (``ctx.committed()``, ``ctx.available()``, ``ctx.macs_budget()``), never the engine.

Order in one optimizer step: backward -> the decay engine's ``after_backward`` (keep-at-zero of
the gradients, the loss gradients self-rectifying reads) -> :meth:`PruningMethod.after_backward`
(a regulariser's gradient) -> ``optimizer.step()`` -> ``ctx.step += 1`` -> the engine's
``after_step`` (keep-at-zero, decay, releases) -> :meth:`PruningMethod.on_release` (if any) ->
:meth:`PruningMethod.after_step` -> :meth:`PruningMethod.select` -> ``ctx.start(ids)``. At the
end: :meth:`PruningMethod.before_compact` -> compaction -> :meth:`PruningMethod.on_compact`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn as nn
from pydantic import BaseModel, ValidationError

from ..config.messages import validation_problems
from ..config.train import TrainSettings
from ..criteria import Criterion, create_criterion
from ..criteria.base import NoOptions
from ..registry import METHODS

if TYPE_CHECKING:
    from .context import PruneContext

__all__ = [
    "STAGED_SELECTION_POINTS",
    "PruningMethod",
    "create_method",
    "list_methods",
    "method_class",
    "register_method",
]

STAGED_SELECTION_POINTS = 5
"""Default selection points of the methods that work between them (a regulariser, a partition, retraining)."""


class PruningMethod:
    """Base class of pruning methods; override the hooks you need.

    Class attributes:
        Options: A pydantic model of the method's keyword options (validated at config load).
        uses_criterion: True when the method ranks by a :class:`~decayprune.criteria.Criterion`
            (then ``prune.criterion`` may replace its default).
        default_criterion: The criterion used when none is given.
        unit_kind: ``"channels"`` (channel groups, compacted at the end) or ``"elements"`` (single
            weights: the Pruner builds :class:`~decayprune.sparse.ElementMasks`, the target is
            ``prune.target_sparsity``).
        policies: The zeroing policies the method can take (None: all; a config that leaves
            ``decay.policy`` unset gets the first).
        selects_at_points: False when the method sets its mask itself (RigL).
    """

    name: ClassVar[str] = "base"
    uses_criterion: ClassVar[bool] = False
    default_criterion: ClassVar[str | None] = None
    unit_kind: ClassVar[str] = "channels"
    #: Selection points when ``prune.iterative_steps`` is unset (1: select the whole budget at the start;
    #: methods whose regulariser, optimizer or retraining works between the points keep
    #: :data:`STAGED_SELECTION_POINTS`).
    default_iterative_steps: ClassVar[int] = 1
    policies: ClassVar[tuple[str, ...] | None] = None
    #: When False, ``iterative_steps`` / ``start_epoch`` / ``end_epoch`` are refused when the config loads.
    selects_at_points: ClassVar[bool] = True

    Options: ClassVar[type[BaseModel]] = NoOptions

    @classmethod
    def default_selection_points(cls, options: dict[str, Any]) -> int:
        """Selection points when ``prune.iterative_steps`` is unset, given the validated ``options`` (every
        field of the method's ``Options``, defaults filled in)."""
        return cls.default_iterative_steps

    def __init__(self, criterion: Criterion | None = None, **options: Any) -> None:
        try:
            self.options: Any = self.Options(**options)  # the subclass's Options (typed there)
        except ValidationError as exc:
            problems = "; ".join(validation_problems(exc, self.Options))
            raise ValueError(f"bad options for pruning method {self.name!r}: {problems}") from None
        self.criterion = criterion

    # ------------------------------------------------------------------ lifecycle hooks
    def setup(self, ctx: "PruneContext") -> None:
        """Called once when the Pruner is built (e.g. add gates with ``ctx.add_channel_multiplier``)."""

    def build_optimizer(self, ctx: "PruneContext", settings: TrainSettings) -> torch.optim.Optimizer | None:
        """Return the training optimizer when the method owns it (e.g. OTOv2's DHSPG); None otherwise."""
        return None

    def observe_gradients(self, ctx: "PruneContext") -> None:
        """After ``loss.backward()`` and *before* the engine's ``after_backward`` zeroes the gradients of
        the units held at zero: read the dense gradient here (RigL grows by it). ``ctx.step`` is the last
        step done (the coming one is ``ctx.step + 1``)."""

    def after_backward(self, ctx: "PruneContext") -> None:
        """After ``loss.backward()`` and the engine's ``after_backward``, before the optimizer step:
        add a regulariser's gradient here (self-rectifying has already read the loss gradient)."""

    def after_step(self, ctx: "PruneContext") -> None:
        """After the optimizer step and the decay engine's step (``ctx.step`` counts it)."""

    def select(self, ctx: "PruneContext") -> torch.Tensor | None:
        """After :meth:`after_step`: return structure ids to start removing now (or None); the Pruner
        starts them with ``ctx.start`` (not at all past the last step a decay may start)."""
        return None

    def on_release(self, ctx: "PruneContext", ids: list[int]) -> None:
        """Self-rectifying released ``ids`` at this step; a method refills its budget from here."""

    def before_compact(self, ctx: "PruneContext") -> None:
        """Before physical removal; the Pruner has already folded channel multipliers."""

    def on_compact(self, ctx: "PruneContext", param_map: dict[nn.Parameter, nn.Parameter]) -> None:
        """After physical removal; ``param_map`` maps each replaced parameter to its new object."""

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (the criterion's included)."""
        return {"criterion": self.criterion.state_dict()} if self.criterion is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        if self.criterion is not None and "criterion" in state:
            self.criterion.load_state_dict(state["criterion"])


def register_method(name: str) -> Callable[[type[PruningMethod]], type[PruningMethod]]:
    """Class decorator adding a method to :data:`decayprune.registry.METHODS` under ``name``."""
    register = METHODS.register(name)

    def wrap(cls: type[PruningMethod]) -> type[PruningMethod]:
        cls.name = name
        return register(cls)

    return wrap


def list_methods() -> list[str]:
    """Names of the registered pruning methods.

    Example:
        >>> {"depgraph", "iterative", "l1", "random"} <= set(list_methods())
        True
    """
    return METHODS.names()


def method_class(name: str) -> type[PruningMethod]:
    """Look a method up by name, with a close-match hint for typos."""
    if name not in METHODS:
        raise ValueError(METHODS.unknown_message(name))
    return METHODS.get(name)


def create_method(name: str, criterion: Criterion | None = None, **options: Any) -> PruningMethod:
    """Build a registered method by name with its options (and criterion, for ranking methods).

    Example:
        >>> create_method("depgraph", sparse_lambda=1e-4).options.sparse_lambda
        0.0001
    """
    cls = method_class(name)
    if criterion is None and cls.default_criterion is not None:
        criterion = create_criterion(cls.default_criterion)
    return cls(criterion=criterion, **options)
