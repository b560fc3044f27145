"""Model zoo with a timm-style registry.

Importing this package registers every built-in family:
``resnet20/32/56/110`` (CIFAR ResNets, option-B shortcuts), ``vgg16``/``vgg19`` (CIFAR VGG-BN),
``small_cnn`` (8x8 / 28x28 images), ``mlp`` (needs ``image_size``), ``mobilenetv2_cifar``
(depthwise convs) and ``concat_cnn`` (channel concatenation).

Every constructor takes ``num_classes``, ``in_channels`` and ``width`` (a multiplier on channel
counts, rounded, at least 1); every built-in model names its final ``nn.Linear``
``classifier`` and is traceable by ``torch_pruning.DependencyGraph``.

Example:
    >>> import torch
    >>> from decayprune.models import create, list_models
    >>> list_models("resnet*")
    ['resnet110', 'resnet20', 'resnet32', 'resnet56']
    >>> create("small_cnn", in_channels=1)(torch.zeros(1, 1, 8, 8)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from decayprune.models import concat_cnn, mlp, mobilenetv2_cifar, resnet_cifar, small_cnn, vgg  # noqa: F401  (registers)
from decayprune.models._registry import create, list_models, model_accepts, register_model
from decayprune.models.resolve import resolve_model

__all__ = ["create", "list_models", "model_accepts", "register_model", "resolve_model"]
