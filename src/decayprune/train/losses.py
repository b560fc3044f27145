"""Training losses beyond one-class-per-sample cross-entropy, and how each counts accuracy.

A :class:`Loss` takes the model's raw outputs (a tensor, a tuple whose first item is the logits, or a
Hugging Face ``ModelOutput`` / dict with ``logits``) and the batch labels. ``scored`` flattens the
outputs and labels into ``(M, C)`` logits and ``(M,)`` classes for top-k accuracy (``M`` samples or
tokens), or returns None where accuracy has no meaning (MSE).

Example:
    >>> loss = make_loss("causal_lm")
    >>> logits = torch.zeros(2, 5, 7)  # (batch, tokens, vocabulary)
    >>> tokens = torch.randint(0, 7, (2, 5))
    >>> round(float(loss(logits, tokens)), 4), loss.scored(logits, tokens)[1].shape
    (1.9459, torch.Size([8]))
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "LOSSES",
    "CausalLMLoss",
    "CrossEntropyLoss",
    "Loss",
    "MSELoss",
    "TokenClassificationLoss",
    "make_loss",
    "output_tensor",
]


def output_tensor(outputs: Any) -> torch.Tensor:
    """The logits (or predictions) in a model's outputs.

    Example:
        >>> output_tensor((torch.ones(1, 2), "cache")).shape, output_tensor({"logits": torch.ones(3)}).shape
        (torch.Size([1, 2]), torch.Size([3]))
    """
    if isinstance(outputs, torch.Tensor):
        return outputs
    logits = outputs.get("logits") if isinstance(outputs, dict) else getattr(outputs, "logits", None)
    if isinstance(logits, torch.Tensor):  # transformers' ModelOutput is a dict with attributes too
        return logits
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    raise TypeError(
        f"cannot find the logits in model outputs of type {type(outputs).__name__}: expected a tensor, "
        "a tuple starting with one, or an object/dict with 'logits'"
    )


class Loss:
    """A batch-mean loss on raw model outputs, and the flattened logits/classes it scores accuracy on."""

    name = "loss"

    def __call__(self, outputs: Any, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def scored(self, outputs: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(logits (M, C), classes (M,))`` for top-k accuracy, or None when accuracy does not apply."""
        return None


class CrossEntropyLoss(Loss):
    """One class per sample: logits ``(N, C)``, labels ``(N,)``."""

    name = "cross_entropy"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def __call__(self, outputs: Any, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output_tensor(outputs).float(), labels, label_smoothing=self.label_smoothing)

    def scored(self, outputs: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return output_tensor(outputs).float(), labels


class TokenClassificationLoss(Loss):
    """One class per token: logits ``(N, T, C)``, labels ``(N, T)``; ``ignore_index`` labels are skipped."""

    name = "token_classification"
    shift = 0

    def __init__(self, ignore_index: int = -100, label_smoothing: float = 0.0) -> None:
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def _flat(self, outputs: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = output_tensor(outputs).float()
        if logits.dim() != 3 or labels.shape != logits.shape[:2]:
            raise ValueError(
                f"{self.name} needs logits (batch, tokens, classes) and labels (batch, tokens), got "
                f"{tuple(logits.shape)} and {tuple(labels.shape)}"
            )
        if self.shift:  # position t predicts token t+1
            logits, labels = logits[:, :-1], labels[:, 1:]
        return logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)

    def __call__(self, outputs: Any, labels: torch.Tensor) -> torch.Tensor:
        logits, classes = self._flat(outputs, labels)
        return F.cross_entropy(logits, classes, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing)

    def scored(self, outputs: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, classes = self._flat(outputs, labels)
        keep = classes != self.ignore_index
        return logits[keep], classes[keep]


class CausalLMLoss(TokenClassificationLoss):
    """Next-token prediction: the labels are the input tokens, logits at ``t`` are scored on token ``t + 1``."""

    name = "causal_lm"
    shift = 1


class MSELoss(Loss):
    """Mean squared error against float targets of the output's shape (no accuracy)."""

    name = "mse"

    def __call__(self, outputs: Any, labels: torch.Tensor) -> torch.Tensor:
        prediction = output_tensor(outputs).float()
        if prediction.shape != labels.shape:
            raise ValueError(
                f"mse needs targets of the output's shape {tuple(prediction.shape)}, got {tuple(labels.shape)}"
            )
        return F.mse_loss(prediction, labels.float())


LOSSES: dict[str, type[Loss]] = {
    cls.name: cls for cls in (CrossEntropyLoss, CausalLMLoss, TokenClassificationLoss, MSELoss)
}


def make_loss(name: str, *, ignore_index: int = -100, label_smoothing: float = 0.0) -> Loss:
    """The loss called ``name`` (one of :data:`LOSSES`).

    Example:
        >>> type(make_loss("token_classification", ignore_index=0)).__name__
        'TokenClassificationLoss'
    """
    if name == "cross_entropy":
        return CrossEntropyLoss(label_smoothing)
    if name in ("causal_lm", "token_classification"):
        return LOSSES[name](ignore_index=ignore_index, label_smoothing=label_smoothing)  # type: ignore[call-arg]
    if name == "mse":
        if label_smoothing:
            raise ValueError("label_smoothing applies to classification losses, not to mse")
        return MSELoss()
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
