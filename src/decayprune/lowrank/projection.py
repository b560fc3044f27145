"""LRPET (Guo et al.): train from scratch, alternating SGD with projection of each weight onto rank r.

:class:`LowRankProjector` projects every chosen Linear / Conv2d weight onto its rank (truncated
SVD) every ``every`` optimizer steps, with energy transfer (the removed singular values' energy
spread evenly over the kept ones, Frobenius norm unchanged) and BN rectification (a conv followed
by a BatchNorm is projected as ``diag(gamma / sqrt(var + eps)) @ W``, the weight the normalised
output sees, and scaled back; our reading of the paper's "cut off BN's effect on the optimal
low-rank approximation"). Between projections the weights train densely (the paper's point: the
solution space is relaxed back to the full one). At the end :func:`~decayprune.lowrank.factorize`
replaces each layer by two thin ones.

DPM on ranks: with ``decay_steps=N`` the singular values past rank r are not cut at the first
projection; each follows ``(N - n) / N`` of its value at the start (``n`` steps since the start)
and is exactly 0 from step N on, when the layer has rank r. With energy transfer the decayed
energy moves to the kept values at every projection. The decay runs here, at projection time,
not in :class:`~decayprune.decay.DecayEngine` (a singular value is not an element of a parameter
in LRPET's dense training); self-rectifying is not offered for ranks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .svd import full_rank, layer_weight, project

__all__ = ["LowRankProjector", "following_batchnorms", "resolve_ranks"]

LOWRANK_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)


def resolve_ranks(
    model: nn.Module, rank: int | float | Mapping[str, int | float], ignored_layers: Sequence[str] = ()
) -> dict[str, int]:
    """The rank of each layer to project: an int is a rank, a float in (0, 1] a fraction of the full rank.

    A mapping names the layers (others stay full); otherwise every Linear and ungrouped Conv2d not
    in ``ignored_layers`` gets ``rank`` (capped at its full rank).

    Example:
        >>> net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))
        >>> resolve_ranks(net, 0.5), resolve_ranks(net, {"0": 3})
        ({'0': 3, '2': 1}, {'0': 3})
    """
    modules = dict(model.named_modules())
    if isinstance(rank, Mapping):
        chosen = dict(rank)
    else:
        chosen = {
            name: rank
            for name, m in modules.items()
            if isinstance(m, LOWRANK_TYPES) and getattr(m, "groups", 1) == 1 and name not in set(ignored_layers)
        }
    out: dict[str, int] = {}
    for name, value in chosen.items():
        module = modules.get(name)
        if not isinstance(module, LOWRANK_TYPES) or getattr(module, "groups", 1) != 1:
            raise ValueError(f"layer {name!r} is not a Linear or ungrouped Conv2d of the model")
        full = full_rank(layer_weight(module))
        if isinstance(value, float):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"rank fraction of {name!r} must be in (0, 1], got {value}")
            out[name] = max(1, round(value * full))
        elif isinstance(value, int) and value >= 1:
            out[name] = min(value, full)
        else:
            raise ValueError(f"rank of {name!r} must be a positive int or a fraction, got {value!r}")
    return out


def following_batchnorms(model: nn.Module, example_inputs: torch.Tensor) -> dict[str, nn.BatchNorm2d]:
    """Convs whose output goes straight into a BatchNorm2d (found by one traced forward)."""
    names = {id(m): n for n, m in model.named_modules()}
    produced: dict[int, str] = {}
    pairs: dict[str, nn.BatchNorm2d] = {}
    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(lambda m, _a, out: produced.__setitem__(id(out), names[id(m)])))
        elif isinstance(module, nn.BatchNorm2d):

            def pre(m: nn.Module, args: tuple) -> None:
                source = produced.get(id(args[0]))
                if source is not None:
                    pairs[source] = m  # type: ignore[assignment]

            handles.append(module.register_forward_pre_hook(pre))
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(example_inputs)
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return pairs


class LowRankProjector:
    """Projects the chosen layers of ``model`` onto their ranks (LRPET).

    Args:
        model: The network (trained densely between projections).
        rank: See :func:`resolve_ranks`.
        every: Project after every ``every`` optimizer steps.
        energy_transfer: Keep each weight's Frobenius norm (the energy of the cut values moves to the kept).
        bn_rectify: Project convs followed by BatchNorm in the BN-scaled space (needs ``example_inputs``).
        example_inputs: For finding the BatchNorms.
        decay_steps: DPM on ranks: the tail singular values decay linearly to 0 over this many
            steps from :meth:`start` (0: cut at the first projection).
        ignored_layers: Layers left full rank.

    Example:
        >>> net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))
        >>> proj = LowRankProjector(net, {"0": 2})
        >>> proj.project_(step=0)
        >>> int(torch.linalg.matrix_rank(net[0].weight.detach()))
        2
    """

    def __init__(
        self,
        model: nn.Module,
        rank: int | float | Mapping[str, int | float],
        *,
        every: int = 1,
        energy_transfer: bool = True,
        bn_rectify: bool = True,
        example_inputs: torch.Tensor | None = None,
        decay_steps: int = 0,
        ignored_layers: Sequence[str] = (),
    ) -> None:
        if every < 1 or decay_steps < 0:
            raise ValueError(f"need every >= 1 and decay_steps >= 0, got {every}, {decay_steps}")
        self.model = model
        self.ranks = resolve_ranks(model, rank, ignored_layers)
        modules = dict(model.named_modules())
        self.modules: dict[str, nn.Module] = {n: modules[n] for n in self.ranks}
        self.every, self.energy_transfer, self.decay_steps = every, energy_transfer, decay_steps
        self.batchnorms = (
            following_batchnorms(model, example_inputs) if bn_rectify and example_inputs is not None else {}
        )
        self.start_step: int | None = None
        self.last_singular_values: dict[str, torch.Tensor] = {}
        """Per layer, the singular values the last projection set (exact: 0 where cut)."""
        self._tail_start: dict[str, torch.Tensor] = {}

    def start(self, step: int) -> None:
        """Begin the rank reduction at ``step`` (records the tail singular values DPM decays from)."""
        self.start_step = step
        self._tail_start = {name: self.singular_values(name)[self.ranks[name] :].clone() for name in self.ranks}

    def singular_values(self, name: str) -> torch.Tensor:
        """Singular values (descending) of layer ``name``'s weight, in the space it is projected in."""
        weight = layer_weight(self.modules[name]).detach()
        matrix = weight.reshape(weight.shape[0], -1).double()
        scale = self._row_scale(name)
        if scale is not None:
            matrix = matrix * scale.double().view(-1, 1)
        return torch.linalg.svdvals(matrix)

    def _row_scale(self, name: str) -> torch.Tensor | None:
        bn = self.batchnorms.get(name)
        if bn is None:
            return None
        gamma = bn.weight.detach() if bn.weight is not None else torch.ones(bn.num_features)
        assert bn.running_var is not None
        scale = gamma.abs() / (bn.running_var + bn.eps).sqrt()
        return torch.where(scale > 1e-12, scale, torch.ones_like(scale))

    def tail_factor(self, step: int) -> float:
        """``(N - n) / N`` at ``step`` (0 once ``n >= N``, or with no decay)."""
        if self.start_step is None or self.decay_steps == 0:
            return 0.0
        return max(0.0, (self.decay_steps - (step - self.start_step)) / self.decay_steps)

    @torch.no_grad()
    def project_(self, step: int) -> None:
        """Project every layer now (``step``: for the rank decay)."""
        if self.start_step is None:
            self.start(step)
        factor = self.tail_factor(step)
        for name, module in self.modules.items():
            rank = self.ranks[name]
            tail_scale: float | torch.Tensor = 0.0
            if factor > 0.0:  # the tail follows (N - n) / N of its start values
                now = self.singular_values(name)[rank:]
                target = self._tail_start[name] * factor
                tail_scale = torch.where(now > 0, target / now.clamp_min(1e-30), torch.zeros_like(now))
            target_weight = layer_weight(module)
            weight, self.last_singular_values[name] = project(
                target_weight,
                rank,
                energy_transfer=self.energy_transfer,
                tail_scale=tail_scale,
                row_scale=self._row_scale(name),
            )
            target_weight.copy_(weight)

    def after_step(self, step: int) -> bool:
        """Project if ``step`` is a projection step; True when it projected."""
        if step % self.every:
            return False
        self.project_(step)
        return True
