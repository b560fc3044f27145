"""Top-k accuracy and loss of a classifier over a data loader."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from decayprune.train.amp import autocast
from decayprune.train.distributed import all_reduce_sum, is_distributed
from decayprune.train.losses import Loss

__all__ = ["evaluate", "model_device", "topk_correct"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a stateless module).

    Example:
        >>> model_device(nn.Linear(2, 2))
        device(type='cpu')
    """
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    """Count samples whose label is among the top-k logits, for each k (clipped to the class count).

    Example:
        >>> logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
        >>> topk_correct(logits, torch.tensor([1, 2]), (1, 5))
        tensor([1, 2])
    """
    num_classes = logits.shape[-1]
    kmax = min(max(ks), num_classes)
    top = logits.topk(kmax, dim=-1).indices
    hits = top.eq(labels.view(-1, 1))
    return torch.stack([hits[:, : min(k, num_classes)].any(dim=1).sum() for k in ks])


def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: torch.device | str | None = None,
    topk: Sequence[int] = (1, 5),
    loss_fn: LossFn | Loss | None = None,
    amp: str | bool = "off",
    distributed: bool | None = None,
) -> dict[str, float | int]:
    """Evaluate a classifier: top-k accuracies in percent, mean loss and sample count.

    The model is put in eval mode and its previous mode is restored afterwards.

    Args:
        model: Maps a batch of inputs to logits ``(N, C)``.
        loader: Iterable of ``(inputs, labels)`` batches.
        device: Where to run; default: the model's device.
        topk: Which top-k accuracies to report; each k is clipped to the class count
            (``top5`` of a 3-class problem is top-3), the key keeps its name.
        loss_fn: Batch-mean loss ``loss_fn(logits, labels)``; default plain cross-entropy. A
            :class:`~decayprune.train.losses.Loss` gets the raw outputs, and top-k counts over
            what its ``scored`` returns (tokens for ``causal_lm``; none for ``mse``: top-k is nan).
        amp: Autocast mode, ``"off"``, ``"bf16"`` or ``"fp16"`` (``True``: ``"fp16"``), as in
            ``TrainSettings.amp``.
        distributed: Sum the counts over all processes; default: when a process group
            is initialized (then every rank must call this).

    Returns:
        ``{"top1": %, "top5": %, "loss": float, "samples": n}``.

    Example:
        >>> data = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))]
        >>> result = evaluate(nn.Linear(3, 2), data, topk=(1,))
        >>> sorted(result), result["samples"]
        (['loss', 'samples', 'top1'], 4)
    """
    if not topk or any(k < 1 for k in topk):
        raise ValueError(f"topk must be a non-empty list of positive ints, got {tuple(topk)}")
    device = torch.device(device) if device is not None else model_device(model)
    loss_fn = loss_fn or F.cross_entropy
    mode = ("fp16" if amp else "off") if isinstance(amp, bool) else amp
    was_training = model.training
    model.eval()
    correct = torch.zeros(len(topk), dtype=torch.float64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    scored = torch.zeros((), dtype=torch.float64, device=device)
    structured = isinstance(loss_fn, Loss)
    try:
        with torch.no_grad():
            for inputs, labels in loader:
                inputs = inputs.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True)
                with autocast(mode, device):
                    outputs = model(inputs)
                batch = labels.shape[0]
                count += batch
                if not structured:
                    logits = outputs.float()
                    loss_sum += loss_fn(logits, labels).double() * batch
                    correct += topk_correct(logits, labels, topk).double()
                    scored += batch
                    continue
                loss_sum += loss_fn(outputs, labels).double() * batch
                flat = loss_fn.scored(outputs, labels)  # type: ignore[union-attr]
                if flat is not None and flat[1].numel():
                    correct += topk_correct(flat[0], flat[1], topk).double()
                    scored += flat[1].numel()
    finally:
        model.train(was_training)
    if distributed if distributed is not None else is_distributed():
        totals = all_reduce_sum(torch.cat([correct, loss_sum.view(1), count.view(1), scored.view(1)]))
        correct, loss_sum, count, scored = totals[: len(topk)], totals[-3], totals[-2], totals[-1]
    samples = int(count.item())
    if samples == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    denominator = float(scored.item()) or float("nan")
    result: dict[str, float | int] = {f"top{k}": 100.0 * c / denominator for k, c in zip(topk, correct.tolist())}
    result["loss"] = float(loss_sum.item()) / samples
    result["samples"] = samples
    return result
