"""Settings of a pruning run: the base method and its criterion, the MACs budget, the schedule
and the zeroing policy (DPM).

Method and criterion options are validated here, when the config is loaded (before any
training), against the typed ``Options`` model each method and criterion registers.

Example:
    >>> s = PruneSettings(method="depgraph", speed_up=2.0, method_options={"sparse_lambda": "1e-4"})
    >>> s.remaining_macs_fraction(), s.method_options["sparse_lambda"]
    (0.5, 0.0001)
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..registry import CRITERIA, METHODS, Registry
from .latency import LatencySettings
from .messages import validation_problems

__all__ = ["DecaySettings", "Policy", "PruneSettings", "validate_options"]

Policy = Literal["oneshot", "sp", "sp+sr"]

DEFAULT_RECOVERY = 0.5
"""Share of the run left for recovery when the schedule is decayprune's: every decay (selections, SR backfills)
ends by the middle of the run. Chosen on ``benchmarks/defaults.py`` (Fashion-MNIST; see the README)."""
EXPLICIT_SCHEDULE_RECOVERY = 0.1
"""The least recovery kept when the user sets ``end_epoch`` or ``decay.steps`` (their schedule is kept)."""


class DecaySettings(BaseModel):
    """How selected structures go to zero: at once (``oneshot``) or by DPM's decay.

    Example:
        >>> DecaySettings(policy="sp+sr", steps=50).self_rectifying
        True
    """

    model_config = ConfigDict(extra="forbid")

    policy: Policy = Field(
        "sp+sr", description="oneshot: zero at selection; sp: smooth decay; sp+sr: decay + self-rectifying"
    )
    steps: int = Field(
        100, ge=1, description="N: optimizer steps a structure takes to decay from its norm to exactly zero"
    )
    sr_criterion: Literal["radial", "pushback"] = Field(
        "radial",
        description="radial: C_rate is the radial share of the optimizer's update (cosine of update and weights), "
        "C_rate and C_len averaged over the last W steps (independent of lr and weight scale); pushback: C_rate is "
        "the push-back in decay quanta of one step and both conditions must hold W consecutive steps (both are "
        "decayprune's definitions; 'paper' is a deprecated name of pushback)",
    )
    t_rate: float = Field(
        0.0,
        description="T_rate: release when C_rate exceeds this (radial: a cosine, -1 <= T_rate < 1; pushback: decay "
        "quanta)",
    )
    t_len: float = Field(1.5, ge=0, description="T_len: release when C_len (gradient norm / layer mean) exceeds this")
    window: int = Field(
        8,
        ge=1,
        description="W: radial: steps averaged (and the least decay steps before a "
        "release; at most N); paper: consecutive steps both conditions must hold",
    )
    cooldown: int = Field(200, ge=0, description="steps a released structure may not be selected again")
    on_release: Literal["keep", "restore"] = Field(
        "keep",
        description="what a released structure's weights become: keep (the decayed weights, trained back from "
        "there) or restore (rescaled to their norm at selection, L_init, in the direction training gave them); "
        "only under sp+sr",
    )
    sync_every: int | None = Field(
        None,
        ge=1,
        description="K: DPM's events (completions, releases) are read back to the host every K optimizer steps "
        "(and whenever the pruned/decaying sets are queried, e.g. at selection points); the math is exact in "
        "between. None: 1 on the CPU, 32 on an accelerator",
    )

    @field_validator("sr_criterion", mode="before")
    @classmethod
    def _deprecated_name(cls, value: Any) -> Any:
        if value == "paper":
            warnings.warn(
                "decay.sr_criterion 'paper' is deprecated: the formula is decayprune's reconstruction, not the "
                "DPM paper's; it is now called 'pushback'",
                DeprecationWarning,
                stacklevel=2,
            )
            return "pushback"
        return value

    @model_validator(mode="after")
    def _thresholds_can_release(self) -> "DecaySettings":
        # A radial C_rate is a cosine: above -1 <= T_rate < 1 no structure could ever be released.
        if self.sr_criterion == "radial" and not -1.0 <= self.t_rate < 1.0:
            raise ValueError(
                f"t_rate: got {self.t_rate!r}, but with sr_criterion 'radial' C_rate is a cosine in [-1, 1], so "
                "T_rate must satisfy -1 <= t_rate < 1 (t_rate >= 1 would never release anything); use e.g. 0.0, or "
                "sr_criterion 'pushback' for thresholds in decay quanta"
            )
        if self.on_release != "keep" and self.policy != "sp+sr":
            raise ValueError(
                f"on_release: {self.on_release!r} acts on structures self-rectifying releases, but policy is "
                f"{self.policy!r}, which releases nothing; use policy 'sp+sr' or leave on_release unset"
            )
        return self

    @property
    def smooth(self) -> bool:
        """True for the DPM policies (``sp`` and ``sp+sr``)."""
        return self.policy != "oneshot"

    @property
    def self_rectifying(self) -> bool:
        """True when self-rectifying is on (``sp+sr``)."""
        return self.policy == "sp+sr"


def validate_options(registry: Registry[Any], name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check ``options`` against the ``Options`` model of the registered ``name``; typed values out.

    Entries without an ``Options`` model take no options.

    Example:
        >>> validate_options(METHODS, "depgraph", {"sparse_lambda": "0.001"})["sparse_lambda"]
        0.001
    """
    options_model = getattr(registry.get(name), "Options", None)
    if options_model is None:
        if options:
            raise ValueError(f"{registry.kind} {name!r} takes no options, got {sorted(options)}")
        return {}
    try:
        return options_model.model_validate(options).model_dump()
    except ValidationError as exc:
        problems = validation_problems(exc, options_model)
        raise ValueError("; ".join(problems)) from None


class PruneSettings(BaseModel):
    """What to prune, to which budget, on which schedule, and how structures reach zero.

    Example:
        >>> PruneSettings(method="l1", target_macs_fraction=0.3).criterion_name()
        'l1_filter'
    """

    model_config = ConfigDict(extra="forbid")

    method: str = Field("depgraph", description="base pruning method (see `decayprune.list_methods()`)")
    method_options: dict[str, Any] = Field(
        default_factory=dict, validate_default=True, description="typed options of the method"
    )
    criterion: str | None = Field(
        None, description="importance criterion for methods that rank by one (default: the method's own)"
    )
    criterion_options: dict[str, Any] = Field(default_factory=dict, description="typed options of the criterion")
    target_macs_fraction: float | None = Field(
        None, gt=0, lt=1, description="fraction of the base MACs to keep, e.g. 0.5"
    )
    speed_up: float | None = Field(
        None, gt=1, description="base MACs / pruned MACs, e.g. 2.0 (alternative to target_macs_fraction)"
    )
    target_sparsity: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="fraction of the masked weights held at zero, e.g. 0.9 (methods that prune single weights, "
        "such as magnitude_elements and snip_elements; they take no MACs target)",
    )
    target_latency_fraction: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="fraction of the base latency to keep on the device of `latency` (measured per-layer table; "
        "alternative to target_macs_fraction)",
    )
    latency: LatencySettings = Field(
        default_factory=LatencySettings,
        description="deployment device of the latency budget and of width_multiple: auto (threads, batch, dtype)",
    )
    decay: DecaySettings = Field(default_factory=DecaySettings, description="zeroing policy and DPM settings")
    iterative_steps: int | None = Field(
        None,
        ge=1,
        description="selection points over the pruning phase; the budget tightens linearly. None: the method's "
        "default (1 for most: the whole budget is selected at start_epoch and, under sp / sp+sr, reached through "
        "the decay; 5 for methods that regularise or optimise between the points: gate_decorator, otov2, slimming, "
        "magnitude_elements' cubic schedule, depgraph with sparse_lambda > 0 in the pruning phase)",
    )
    start_epoch: float = Field(0.0, ge=0, description="epoch (of the pruning run) of the first selection")
    end_epoch: float | None = Field(
        None, ge=0, description="epoch of the last selection (default: leaves room for the decay and recovery)"
    )
    recovery_fraction: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="share of the run kept for recovery: no selection, backfill or re-selection starts unless its "
        "decay ends at least this share of the run before the end. None: 0.5 (pruning in the first half, "
        "recovery in the second) when end_epoch and decay.steps are left unset, 0.1 when either is set",
    )
    ignored_layers: list[str] = Field(
        default_factory=list, description="module names whose output channels are never pruned"
    )
    width_multiple: int | Literal["auto"] = Field(
        "auto",
        description="channels kept per pruned layer are a multiple of this (layers narrower than it are not "
        "pruned); auto: 8 when latency.device is cuda, 1 on the CPU",
    )
    ignored_types: list[str] = Field(
        default_factory=list, description="module class names (e.g. LayerNorm, Conv1D) whose layers are kept whole"
    )
    verify: bool | Literal["auto"] = Field(
        "auto",
        description="empirical exactness check before pruning (float64 copy: zero, compact, compare outputs); "
        "groups that fail are refused. auto: only groups with risky ops (attention, sigmoid, unknown ops); "
        "true: all; false: none",
    )
    verify_tolerance: float = Field(1e-6, gt=0, lt=1, description="relative output error the exactness check accepts")
    head_units: Literal["kv", "query"] = Field(
        "kv",
        description="what one attention-head unit is: kv = a KV head with the query heads sharing it (GQA); "
        "query = one query head of every KV group (KV heads kept); the same without GQA",
    )

    @model_validator(mode="before")
    @classmethod
    def _round_to_replaced(cls, data: Any) -> Any:
        if isinstance(data, dict) and "round_to" in data:
            raise ValueError(
                f"round_to: got {data['round_to']!r}; round_to (the number of pruned channels per layer a multiple "
                "of N) was replaced by width_multiple: N (the number of channels kept per layer a multiple of N, "
                "what hardware kernels need); write width_multiple instead"
            )
        return data

    @field_validator("width_multiple")
    @classmethod
    def _positive_multiple(cls, value: int | str) -> int | str:
        if value != "auto" and (isinstance(value, bool) or int(value) < 1):
            raise ValueError(f"got {value!r}; allowed: a positive integer or 'auto'")
        return value

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(METHODS.allowed_message(value))
        return value

    @field_validator("criterion")
    @classmethod
    def _known_criterion(cls, value: str | None) -> str | None:
        if value is not None and value not in CRITERIA:
            raise ValueError(CRITERIA.allowed_message(value))
        return value

    @field_validator("method_options")
    @classmethod
    def _method_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        method = info.data.get("method")
        return value if method is None else validate_options(METHODS, method, value)

    @model_validator(mode="after")
    def _consistent(self) -> "PruneSettings":
        method_cls = METHODS.get(self.method)
        if self.prunes_elements():
            self._check_element_settings(method_cls)
        elif self.target_sparsity is not None:
            takers = [n for n in METHODS.names() if getattr(METHODS.get(n), "unit_kind", "channels") == "elements"]
            raise ValueError(
                f"target_sparsity: method {self.method!r} prunes channel groups, so give target_macs_fraction or "
                f"speed_up instead; methods that prune single weights to a target_sparsity: {', '.join(takers)}"
            )
        else:
            given = [
                k
                for k in ("target_macs_fraction", "speed_up", "target_latency_fraction")
                if getattr(self, k) is not None
            ]
            if len(given) != 1:
                raise ValueError(
                    "give exactly one of target_macs_fraction (fraction of the MACs kept, 0..1), speed_up (> 1) or "
                    f"target_latency_fraction (fraction of the latency kept, 0..1); got {', '.join(given) or 'none'}"
                )
        allowed = getattr(method_cls, "policies", None)
        if allowed is not None and self.decay.policy not in allowed and "policy" not in self.decay.model_fields_set:
            # The policy was left to its default: the method's own first policy (RigL: oneshot).
            self.decay = self.decay.model_copy(update={"policy": allowed[0]})
        if allowed is not None and self.decay.policy not in allowed:
            raise ValueError(
                f"decay.policy: method {self.method!r} cannot take policy {self.decay.policy!r}; allowed: "
                f"{', '.join(allowed)}"
            )
        if self.criterion is not None and not getattr(method_cls, "uses_criterion", False):
            takers = [n for n in METHODS.names() if getattr(METHODS.get(n), "uses_criterion", False)]
            raise ValueError(
                f"method {self.method!r} does not rank by a criterion, so 'criterion' does not apply; "
                f"methods that take one: {', '.join(takers)}"
            )
        name = self.criterion_name()
        if name is None and self.criterion_options:
            raise ValueError(f"method {self.method!r} has no criterion, so criterion_options do not apply")
        if name is not None:
            try:
                self.criterion_options = validate_options(CRITERIA, name, self.criterion_options)
            except ValueError as err:
                raise ValueError(f"criterion_options: {err}") from None
        return self

    def _check_element_settings(self, method_cls: Any) -> None:
        if self.target_sparsity is None or any(
            getattr(self, k) is not None for k in ("target_macs_fraction", "speed_up", "target_latency_fraction")
        ):
            raise ValueError(
                f"method {self.method!r} prunes single weights: give target_sparsity (fraction of the masked weights "
                "held at zero, 0..1) and none of target_macs_fraction, speed_up, target_latency_fraction (a zeroed "
                "weight saves no MACs "
                "on dense kernels)"
            )
        channel_only = sorted(
            {"width_multiple", "head_units", "ignored_types", "verify", "verify_tolerance"} & self.model_fields_set
        )
        if channel_only:
            raise ValueError(
                f"{', '.join(channel_only)}: channel-group settings, which do not apply to method {self.method!r} "
                "(it masks single weights; ignored_layers leaves whole layers dense)"
            )
        if not getattr(method_cls, "selects_at_points", True):
            scheduled = sorted({"iterative_steps", "start_epoch", "end_epoch"} & self.model_fields_set)
            if scheduled:
                raise ValueError(
                    f"{', '.join(scheduled)}: method {self.method!r} sets its mask itself (it has no selection "
                    "points); its schedule is in method_options (delta_t, end_fraction)"
                )

    def prunes_elements(self) -> bool:
        """True when the method prunes single weights (element masks) rather than channel groups."""
        return getattr(METHODS.get(self.method), "unit_kind", "channels") == "elements"

    def criterion_name(self) -> str | None:
        """The criterion in force: ``criterion`` when set, else the method's default (None if it has none)."""
        return self.criterion or getattr(METHODS.get(self.method), "default_criterion", None)

    @property
    def budget_kind(self) -> Literal["macs", "latency"]:
        """What the budget counts: ``macs`` (target_macs_fraction / speed_up) or ``latency``."""
        return "latency" if self.target_latency_fraction is not None else "macs"

    def remaining_fraction(self) -> float:
        """The fraction of the base cost (MACs or latency, see :attr:`budget_kind`) the pruned model may keep.

        Example:
            >>> PruneSettings(target_latency_fraction=0.6).remaining_fraction()
            0.6
        """
        if self.target_latency_fraction is not None:
            return self.target_latency_fraction
        return self.remaining_macs_fraction()

    def selection_points(self) -> int:
        """``iterative_steps`` in force: the value given, else the method's ``default_selection_points``.

        Example:
            >>> PruneSettings(target_macs_fraction=0.5).selection_points()
            1
            >>> PruneSettings(method="gate_decorator", target_macs_fraction=0.5).selection_points()
            5
        """
        if self.iterative_steps is not None:
            return self.iterative_steps
        return int(METHODS.get(self.method).default_selection_points(self.method_options))

    def recovery_share(self) -> float:
        """``recovery_fraction`` in force: the value given, else the default rule (see the field).

        Example:
            >>> PruneSettings(target_macs_fraction=0.5).recovery_share()
            0.5
            >>> PruneSettings(target_macs_fraction=0.5, end_epoch=3).recovery_share()
            0.1
        """
        if self.recovery_fraction is not None:
            return self.recovery_fraction
        own_schedule = self.end_epoch is not None or "steps" in self.decay.model_fields_set
        return EXPLICIT_SCHEDULE_RECOVERY if own_schedule else DEFAULT_RECOVERY

    def remaining_macs_fraction(self) -> float:
        """The fraction of the base MACs the pruned model may keep (1.0 for element methods: masks keep every MAC
        of a dense kernel; their target is :attr:`target_sparsity`).

        Raises:
            ValueError: When the budget is a latency (``target_latency_fraction``), not MACs.
        """
        if self.prunes_elements():
            return 1.0
        if self.target_macs_fraction is not None:
            return self.target_macs_fraction
        if self.speed_up is None:
            raise ValueError("this budget is a latency (target_latency_fraction), not a MACs fraction")
        return 1.0 / float(self.speed_up)
