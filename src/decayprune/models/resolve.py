"""Turn a model spec (a registered name, ``package.module:factory``, ``transformers:``/``timm:``/``torchvision:``)
into a model.

The same resolver serves ``decayprune check --model`` and ``model.name`` of train and prune configs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import UserError
from ..registry import MODELS
from ._registry import create

__all__ = ["EXTERNAL_PREFIXES", "is_registered", "resolve_model"]

#: Prefixes of specs served by another library, with the package each one needs.
EXTERNAL_PREFIXES = {"transformers": "transformers", "timm": "timm", "torchvision": "torchvision"}


def is_registered(spec: str) -> bool:
    """True when ``spec`` names a model of decayprune's registry (not a factory path or library spec).

    Example:
        >>> is_registered("resnet20"), is_registered("timm:resnet18")
        (True, False)
    """
    return ":" not in spec and spec in MODELS


def _library(spec: str, package: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError:
        raise UserError(
            f"'{spec}' needs the {package} package, which is not installed (pip install {package})"
        ) from None


def _transformers_model(spec: str, target: str, kwargs: dict[str, Any]) -> nn.Module:
    """A config class (random init), a model class (random init from its config class) or a local model."""
    transformers = _library(spec, "transformers")
    attr = getattr(transformers, target, None) if target.isidentifier() else None
    if attr is not None and target.endswith("Config"):
        return transformers.AutoModel.from_config(attr(**kwargs))
    if attr is not None and isinstance(getattr(attr, "config_class", None), type):
        return attr(attr.config_class(**kwargs))
    folder = Path(target).expanduser()
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"'{spec}': not a transformers config or model class, nor a model folder or id available "
            f"locally ({exc.__class__.__name__}); expected e.g. transformers:BertConfig, "
            "transformers:LlamaForCausalLM or transformers:/path/to/saved_model"
        ) from None
    architectures = getattr(config, "architectures", None) or []
    model_cls = getattr(transformers, architectures[0], None) if architectures else None
    model_cls = model_cls or transformers.AutoModel
    return model_cls.from_pretrained(str(folder), local_files_only=True, **kwargs)


def resolve_model(spec: str, **kwargs: Any) -> nn.Module:
    """A model from a registered name, a factory path or a library spec.

    ``spec`` forms:

    - ``"resnet20"``: a registered model (see :func:`decayprune.models.list_models`);
    - ``"my_pkg.nets:build"``: calls ``build(**kwargs)``;
    - ``"transformers:BertConfig"``: a randomly initialised ``AutoModel`` from ``BertConfig(**kwargs)``;
      ``"transformers:GPT2LMHeadModel"``: that class from its config class, ``(**kwargs)``;
      ``"transformers:<folder or model id>"``: ``from_pretrained`` of a model available locally
      (no download), with the class its ``config.json`` names;
    - ``"timm:<name>"``: ``timm.create_model(name, **kwargs)``;
    - ``"torchvision:<name>"``: ``torchvision.models.get_model(name, **kwargs)``.

    Raises:
        UserError: the spec names nothing, its library is not installed, or it built no ``nn.Module``.

    Example:
        >>> type(resolve_model("small_cnn", in_channels=1)).__name__
        'SmallCNN'
        >>> resolve_model("torch.nn:Linear", in_features=2, out_features=3)
        Linear(in_features=2, out_features=3, bias=True)
    """
    prefix, sep, target = spec.partition(":")
    if sep and prefix in EXTERNAL_PREFIXES:
        if not target:
            raise UserError(f"'{spec}': give a name after '{prefix}:'")
        if prefix == "transformers":
            model = _transformers_model(spec, target, kwargs)
        elif prefix == "timm":
            model = _library(spec, "timm").create_model(target, **kwargs)
        else:
            model = _library(spec, "torchvision").models.get_model(target, **kwargs)
    elif sep:
        try:
            factory = getattr(importlib.import_module(prefix), target)
        except (ImportError, AttributeError) as exc:
            raise UserError(f"cannot load model factory '{spec}': {exc} (expected package.module:function)") from None
        model = factory(**kwargs)
    elif spec in MODELS:
        return create(spec, **kwargs)
    else:
        raise UserError(
            MODELS.unknown_message(spec) + "; or give package.module:factory, transformers:<Config, model class or "
            "local folder>, timm:<name> or torchvision:<name>"
        )
    if not isinstance(model, nn.Module):
        raise UserError(f"'{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    return model
