"""NISP (Yu et al., CVPR 2018): final-response-layer importance propagated backwards in closed form.

The importance of the features of the final response layer (FRL: the input of the model's last
``nn.Linear``, the features the classifier reads) comes from a data pass, ranked by Infinite
Feature Selection (Roffo et al., ICCV 2015) as the paper does (``feature_ranking="inf_fs"``) or
uniform (``"uniform"``). It is propagated backwards with ``s_k = |W_{k+1}|^T s_{k+1}``: on a copy
of the model whose convolutions and linear layers carry ``|W|`` and no bias, whose BatchNorms scale
by ``|gamma / sigma|`` (no shift), whose ReLUs (and ReLU6, leaky ReLU) pass values unchanged and
whose max pooling averages its window, the network is linear, and the vector-Jacobian product of
``s_FRL`` is exactly the layer-by-layer recursion: through flatten and pooling by their (positive)
linear maps, through a residual add by summing both paths, through a concatenation by its slices.
A convolution's channel sums its positions. A structure scores the importance at the output of its
producing conv / linear layer (before its BatchNorm, so a zeroed ``gamma`` scores zero), the largest
over its producers (the first producer of a residual stream; its importance includes every later
path). Operations outside that family (LayerNorm, GELU, attention) pass as the model computes them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch.nn.modules.batchnorm import _BatchNorm
from torch.overrides import TorchFunctionMode

from ..errors import UserError
from .base import Criterion, register_criterion
from .passes import capture_outputs, eval_mode, forward_passes
from .reduce import CONV_OR_LINEAR

if TYPE_CHECKING:
    from .view import ScoringView

__all__ = ["NISP", "inf_fs_scores", "nisp_propagate"]

_PASS_THROUGH = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_"}


def _avg_for_max(func_name: str, args: tuple, kwargs: dict) -> torch.Tensor:
    """The averaging pool with the window of a max pooling call (the linear map NISP propagates through)."""
    names = ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
    bound = {**dict(zip(names, args, strict=False)), **kwargs}
    dims = int(func_name[-2])
    if func_name.startswith("adaptive"):
        adaptive: Callable[..., torch.Tensor] = getattr(F, f"adaptive_avg_pool{dims}d")
        return adaptive(bound["input"], args[1] if len(args) > 1 else kwargs["output_size"])
    pool: Callable[..., torch.Tensor] = getattr(F, f"avg_pool{dims}d")
    stride = bound.get("stride") or bound["kernel_size"]
    return pool(
        bound["input"],
        bound["kernel_size"],
        stride,
        bound.get("padding", 0),
        bool(bound.get("ceil_mode", False)),
        count_include_pad=False,
    )


class _Linearised(TorchFunctionMode):
    """ReLU-family functions pass their input; max pooling averages its window."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _PASS_THROUGH and args and isinstance(args[0], torch.Tensor):
            return args[0]
        if name.rstrip("_").endswith(("max_pool1d", "max_pool2d", "max_pool3d")) and "with_indices" not in name:
            return _avg_for_max(name, args, kwargs)
        return func(*args, **kwargs)


def _absolute_copy(model: nn.Module) -> nn.Module:
    """A float64 eval-mode copy with ``|W|`` and no bias in conv / linear layers and BN as ``|gamma / sigma|``."""
    twin = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for module in twin.modules():
            if isinstance(module, CONV_OR_LINEAR):
                module.weight.abs_()
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, _BatchNorm):
                if module.weight is not None:
                    module.weight.abs_()
                if module.bias is not None:
                    module.bias.zero_()
                if module.running_mean is not None:
                    module.running_mean.zero_()
    return twin


def _last_linear(model: nn.Module, example: Any) -> str:
    """Name of the last ``nn.Linear`` the forward pass runs (its input is the final response layer)."""
    order: list[str] = []
    names = {m: n for n, m in model.named_modules()}
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(names[mod])) for m in linears]
    try:
        with eval_mode(model), torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    if not order:
        raise UserError("nisp needs a final nn.Linear layer: its input is the final response layer")
    return order[-1]


def inf_fs_scores(features: torch.Tensor, alpha: float = 0.5, factor: float = 0.9) -> torch.Tensor:
    """Infinite Feature Selection scores of the columns of ``features`` ``[N, F]`` (high = important).

    ``A_ij = alpha * sigma_ij + (1 - alpha) * (1 - |spearman_ij|)`` with ``sigma_ij`` the larger of the
    two standard deviations (min-max scaled to [0, 1]); the score of feature ``i`` is the row sum of
    ``(I - r A)^-1 - I`` (every path through the feature graph), ``r = factor / rho(A)``.

    Example:
        >>> x = torch.stack([torch.arange(8.0), torch.arange(8.0) * 0.01, torch.randn(8)], 1)
        >>> s = inf_fs_scores(x)
        >>> bool(s[0] > s[1])   # same order as feature 1, ten times the spread
        True
    """
    x = features.double()
    n, f = x.shape
    std = x.std(0) if n > 1 else torch.zeros(f, dtype=x.dtype)
    sigma = torch.maximum(std.view(-1, 1), std.view(1, -1))
    span = sigma.max() - sigma.min()
    sigma = (sigma - sigma.min()) / span if span > 0 else torch.zeros_like(sigma)
    ranks = x.argsort(0).argsort(0).double()
    centred = ranks - ranks.mean(0)
    norms = centred.norm(dim=0)
    corr = (centred.T @ centred) / (norms.view(-1, 1) * norms.view(1, -1)).clamp_min(1e-12)
    corr = torch.where((norms.view(-1, 1) > 0) & (norms.view(1, -1) > 0), corr, torch.zeros_like(corr))
    a = alpha * sigma + (1 - alpha) * (1 - corr.abs())
    rho = torch.linalg.eigvalsh(a).abs().max()
    if float(rho) == 0:
        return torch.ones(f, dtype=x.dtype)
    eye = torch.eye(f, dtype=x.dtype)
    return (torch.linalg.inv(eye - (factor / rho) * a) - eye).sum(1)


def nisp_propagate(
    model: nn.Module, example: Any, frl_layer: str, frl_importance: torch.Tensor, modules: list[nn.Module]
) -> dict[nn.Module, torch.Tensor]:
    """Per module of ``modules``, the NISP importance of each output channel (``s_k`` summed over positions).

    ``frl_importance`` weighs the input features of the layer ``frl_layer``; ``example`` fixes the
    shapes (the propagation itself does not depend on its values: the copy is linear and positive).

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
        >>> with torch.no_grad():
        ...     _ = net[2].weight.copy_(torch.tensor([[-3.0, 0.5], [1.0, 2.0]]))
        >>> nisp_propagate(net, torch.zeros(1, 2), "4", torch.tensor([1.0, 2.0]), [net[0]])[net[0]].tolist()
        [5.0, 4.5]
    """
    twin = _absolute_copy(model)
    names = {m: n for n, m in model.named_modules()}
    twins = {m: twin.get_submodule(names[m]) for m in modules}
    head = twin.get_submodule(frl_layer)
    seen_input: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _o: seen_input.append(inputs[0]))
    ones = tuple(torch.ones_like(x).double() for x in example) if isinstance(example, (tuple, list)) else None
    probe = ones if ones is not None else torch.ones_like(example[:1]).double()
    try:
        with torch.enable_grad(), _Linearised(), capture_outputs(list(twins.values())) as seen:
            twin(probe) if ones is None else twin(*probe)
            if not seen_input:
                raise UserError(f"nisp: the final response layer {frl_layer!r} did not run")
            frl = seen_input[-1]
            target = (frl.reshape(frl.shape[0], -1) * frl_importance.double().to(frl.device)).sum()
            outs = [seen[twins[m]] for m in modules]
            grads = torch.autograd.grad(target, outs, allow_unused=True)
    finally:
        hook.remove()
    result = {}
    for module, out, grad in zip(modules, outs, grads, strict=True):
        g = torch.zeros_like(out) if grad is None else grad
        dim = -1 if isinstance(module, nn.Linear) else 1
        result[module] = g.movedim(dim, 0).reshape(g.shape[dim], -1).sum(1).cpu()
    return result


@register_criterion("nisp")
class NISP(Criterion):
    """NISP: final-response-layer importance (Inf-FS) propagated back by s_k = |W_{k+1}|^T s_{k+1}.

    Example:
        >>> NISP().needs == {"data"}
        True
    """

    needs = frozenset({"data"})
    paper = "Yu et al., NISP: Pruning Networks using Neuron Importance Score Propagation, CVPR 2018"

    class Options(BaseModel):
        """Options of :class:`NISP`."""

        model_config = ConfigDict(extra="forbid")
        feature_ranking: Literal["inf_fs", "uniform"] = Field(
            "inf_fs", description="FRL feature importance: Inf-FS over calibration features (the paper) or ones"
        )
        batches: int = Field(4, ge=1, description="calibration batches for the FRL features")
        alpha: float = Field(0.5, ge=0, le=1, description="Inf-FS mix of spread and decorrelation")

    def score(self, ctx: "ScoringView") -> torch.Tensor:
        s = ctx.structures
        batches = list(ctx.calibration_batches(self.options.batches))
        if not batches:
            raise UserError("nisp: the calibration data is empty")
        example = batches[0][0]
        frl_layer = _last_linear(ctx.model, example)
        frl_module = ctx.model.get_submodule(frl_layer)
        features: list[torch.Tensor] = []
        hook = frl_module.register_forward_hook(lambda _m, inputs, _o: features.append(inputs[0].detach()))
        try:
            for _ in forward_passes(ctx.with_batches(batches), len(batches)):
                pass
        finally:
            hook.remove()
        frl = torch.cat([f.reshape(f.shape[0], -1) for f in features]).cpu()
        if self.options.feature_ranking == "inf_fs":
            importance = inf_fs_scores(frl, self.options.alpha)
        else:
            importance = torch.ones(frl.shape[1], dtype=torch.float64)
        sites = [site for group in s.layers for site in group.weight_sites(CONV_OR_LINEAR)]
        modules = list(dict.fromkeys(m for m, _p, _i in sites))
        per_module = nisp_propagate(ctx.model, example, frl_layer, importance, modules)
        scores = torch.zeros(s.num_structures, dtype=torch.float64)
        for module, positions, ids in sites:
            scores.scatter_reduce_(0, ids, per_module[module][positions], reduce="amax")
        return scores.float()
