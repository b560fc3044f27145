"""Can decayprune prune this model, exactly? Build the structures, prune, compact, compare.

:func:`check_model` works on a copy of the model: it builds the :class:`StructureSet` (output
protection, static refusals and the exactness check), zeroes a random set of structures until
the analytic MACs reach the target (the structures a oneshot random method would remove; the
decay policies end in the same masked model), compacts the copy and compares its outputs with
the masked ones. :func:`format_report` renders the result as text. It lives in jobs/ because it builds, trains and
compacts a whole :class:`~decayprune.pruner.Pruner`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import PruneSettings
from ..decay import DecaySettings
from ..errors import UserError
from ..measure.inputs import as_inputs, call_model, map_inputs
from ..pruner import Pruner
from ..structure import FrozenGroup, StructureSet, UnsupportedModelError, compact
from ..structure.exactness import output_error
from ..structure.outputs import output_tensors
from ..structure.prefix import smallest_prefix

__all__ = ["CheckReport", "check_model", "format_report"]


@dataclass
class CheckReport:
    """What :func:`check_model` found.

    Attributes:
        model: The model's name (or class name).
        passed: True when the structures build, compaction is exact (``error <= tolerance``) and,
            when anything is prunable, the MACs went down; a model with nothing prunable but
            refusals for every group does not pass (it is refused).
        prunable: ``(layer, structures)`` of every group offered for pruning.
        frozen: Groups refused, with the reason.
        macs_before / macs_after / params_before / params_after: Measured on the real model before
            and after compaction (analytic counts).
        error: Relative output error of the compacted model against the masked one (None when
            nothing could be built).
        tolerance: The threshold on ``error``.
        message: Why the structures could not be built at all (None otherwise).
    """

    model: str
    passed: bool
    prunable: list[tuple[str, int]] = field(default_factory=list)
    frozen: list[FrozenGroup] = field(default_factory=list)
    macs_before: float = 0.0
    macs_after: float = 0.0
    params_before: float = 0.0
    params_after: float = 0.0
    error: float | None = None
    tolerance: float = 1e-5
    message: str | None = None

    @property
    def macs_fraction(self) -> float:
        """MACs kept (after / before); 1.0 when nothing was measured."""
        return self.macs_after / self.macs_before if self.macs_before else 1.0


def _random_mask(s: StructureSet, target: float, generator: torch.Generator) -> torch.Tensor:
    """Random structures (each layer keeps one) until the analytic MACs reach ``target`` x the full MACs."""
    order = torch.randperm(s.num_structures, generator=generator)
    keep_one = (
        torch.stack([layer.ids[torch.randint(layer.size, (1,), generator=generator)[0]] for layer in s.layers])
        if s.layers
        else torch.zeros(0, dtype=torch.long)
    )
    order = order[~torch.isin(order, keep_one)]
    full = s.macs(torch.zeros(s.num_structures, dtype=torch.bool))

    def mask(n: int) -> torch.Tensor:
        m = torch.zeros(s.num_structures, dtype=torch.bool)
        m[order[:n]] = True
        return m

    return mask(smallest_prefix(lambda n: s.macs(mask(n)), order.numel(), target * full))


def check_model(
    model: nn.Module,
    example_inputs: torch.Tensor | Sequence[Any] | Mapping[str, Any],
    *,
    name: str | None = None,
    target_macs_fraction: float = 0.7,
    tolerance: float = 1e-5,
    ignored_layers: Iterable[nn.Module | str] = (),
    ignored_types: Sequence[type[nn.Module] | str] = (),
    verify: bool | str = True,
    seed: int = 0,
    steps: int = 0,
) -> CheckReport:
    """Prune a copy of ``model`` to ``target_macs_fraction`` of its MACs, compact it, and report.

    ``steps=0`` (default) removes a random set of structures at once. ``steps > 0`` runs the
    whole pipeline instead: a :class:`~decayprune.pruner.Pruner` (random method, ``sp+sr``
    decay over a third of the steps) for that many SGD steps on synthetic batches (the example
    inputs plus noise, loss = mean square of the outputs), then its own compaction (optimizer
    state remapped); the masked model is compared with the compacted one as before.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3),
        ...                     nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))
        >>> r = check_model(net, torch.randn(1, 3, 16, 16))
        >>> r.passed, r.error < 1e-5, r.macs_fraction < 0.8
        (True, True, True)
    """
    if not 0 < target_macs_fraction < 1:
        raise UserError(f"target_macs_fraction must be between 0 and 1 (exclusive), got {target_macs_fraction!r}")
    label = name or type(model).__name__
    work = copy.deepcopy(model).eval()
    inputs = as_inputs(example_inputs)
    try:
        s = StructureSet(
            work, inputs, ignored_layers=_names(model, ignored_layers), ignored_types=ignored_types, verify=verify
        )
    except (UnsupportedModelError, UserError) as exc:
        return CheckReport(label, False, tolerance=tolerance, message=str(exc))
    report = CheckReport(
        label,
        False,
        prunable=[(layer.name, layer.size) for layer in s.layers],
        frozen=list(s.frozen),
        tolerance=tolerance,
    )
    report.macs_before, report.params_before = s.macs(), s.params()
    if not s.layers:
        report.message = "no channel group can be pruned exactly"
        report.macs_after, report.params_after, report.error = report.macs_before, report.params_before, 0.0
        return report
    pruner = None
    if steps > 0:
        pruner = _run_pipeline(work, inputs, s, target_macs_fraction, steps, seed, tolerance)
        work.eval()
    else:
        s.set_pruned(_random_mask(s, target_macs_fraction, torch.Generator().manual_seed(seed)).nonzero().flatten())
        s.zero_pruned_()
    with torch.no_grad():
        masked = call_model(work, inputs)
    try:
        if pruner is not None:
            pruner.compact()
        else:
            compact(s)
        with torch.no_grad():
            compacted = call_model(work, inputs)
        after = StructureSet(work, inputs, ignore_classifier=False, verify=False)
        report.macs_after, report.params_after = after.macs(), after.params()
        report.error = output_error(masked, compacted)
    except Exception as exc:  # a crash is a failed check, reported with its message
        report.message = f"compaction failed: {type(exc).__name__}: {exc}"
        report.error = math.inf
        return report
    report.passed = report.error <= tolerance and report.macs_after < report.macs_before
    return report


def _run_pipeline(
    model: nn.Module,
    inputs: tuple | dict,
    structures: StructureSet,
    target: float,
    steps: int,
    seed: int,
    tolerance: float,
) -> Any:
    """Train ``model`` for ``steps`` synthetic SGD steps under a random-method, sp+sr Pruner; return it."""
    settings = PruneSettings(
        method="random",
        target_macs_fraction=target,
        iterative_steps=1,
        verify=False,
        decay=DecaySettings(policy="sp+sr", steps=max(1, steps // 3)),
    )
    pruner = Pruner(model, inputs, settings, total_steps=steps, structures=structures)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    pruner.bind(optimizer)
    g = torch.Generator().manual_seed(seed)

    def batch(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return torch.cat([x, x + 0.1 * torch.randn(x.shape, generator=g, dtype=x.dtype)])
        return torch.cat([x, x]) if isinstance(x, torch.Tensor) else x

    model.train()
    for _ in range(steps):
        outs = [
            t
            for t in output_tensors(call_model(model, map_inputs(inputs, batch)))
            if t.is_floating_point() and t.requires_grad
        ]
        loss = sum(t.float().square().mean() for t in outs)
        optimizer.zero_grad()
        if isinstance(loss, torch.Tensor):
            loss.backward()
        pruner.after_backward()
        optimizer.step()
        pruner.after_step()
    pruner.finish()
    structures.zero_pruned_(optimizer)
    return pruner


def _names(model: nn.Module, ignored: Iterable[nn.Module | str]) -> list[str]:
    """Ignored modules of ``model`` as names (the check works on a copy)."""
    names = {m: n for n, m in model.named_modules()}
    return [entry if isinstance(entry, str) else names[entry] for entry in ignored]


def format_report(report: CheckReport) -> str:
    """The report as text: verdict, MACs and params before/after, error, and each refusal.

    Example:
        >>> print(format_report(CheckReport("m", False, message="nothing to prune")).splitlines()[0])
        m: FAIL (nothing to prune)
    """
    verdict = "PASS" if report.passed else "FAIL"
    head = f"{report.model}: {verdict}" + (f" ({report.message})" if report.message else "")
    lines = [head]
    if report.macs_before:
        lines.append(
            f"  MACs   {report.macs_before / 1e6:10.3f}M -> {report.macs_after / 1e6:10.3f}M "
            f"({report.macs_fraction:.1%})"
        )
        lines.append(f"  params {report.params_before / 1e6:10.3f}M -> {report.params_after / 1e6:10.3f}M")
    if report.error is not None:
        lines.append(f"  compaction error {report.error:.2e} (tolerance {report.tolerance:g})")
    lines.append(f"  prunable groups: {len(report.prunable)} ({sum(n for _l, n in report.prunable)} structures)")
    if report.frozen:
        lines.append(f"  frozen groups: {len(report.frozen)}")
        for f in report.frozen:
            lines.append(f"    - {f.layer} [{f.kind}, {f.channels} ch]: {f.reason}")
    return "\n".join(lines)
