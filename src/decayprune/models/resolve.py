"""Turn a model spec (a registered name, ``package.module:factory`` or a transformers config) into a model."""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from ..errors import UserError
from ..registry import MODELS
from ._registry import create

__all__ = ["resolve_model"]


def resolve_model(spec: str, **kwargs: Any) -> nn.Module:
    """A model from a registered name, a ``package.module:factory`` path or a transformers config class.

    ``spec`` forms: ``"resnet20"`` (see :func:`decayprune.models.list_models`),
    ``"my_pkg.nets:build"`` (calls ``build(**kwargs)``), ``"transformers:BertConfig"`` (a randomly
    initialised ``AutoModel`` from ``BertConfig(**kwargs)``; needs transformers installed).

    Example:
        >>> type(resolve_model("small_cnn", in_channels=1)).__name__
        'SmallCNN'
    """
    if spec.startswith("transformers:"):
        try:
            transformers = importlib.import_module("transformers")
        except ImportError:
            raise UserError(f"'{spec}' needs the transformers package, which is not installed") from None
        config_cls = getattr(transformers, spec.split(":", 1)[1], None)
        if config_cls is None or not spec.endswith("Config"):
            raise UserError(
                f"'{spec}': transformers has no config class '{spec.split(':', 1)[1]}' "
                "(expected e.g. transformers:BertConfig)"
            )
        return transformers.AutoModel.from_config(config_cls(**kwargs))
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UserError(f"cannot load model factory '{spec}': {exc} (expected package.module:function)") from None
        model = factory(**kwargs)
        if not isinstance(model, nn.Module):
            raise UserError(f"'{spec}' returned {type(model).__name__}, not a torch.nn.Module")
        return model
    if spec not in MODELS:
        raise UserError(MODELS.unknown_message(spec) + "; or give package.module:factory or transformers:<Config>")
    return create(spec, **kwargs)
