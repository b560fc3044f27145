"""Turn a run config into the pieces of a run: data, model, loaders, weights on disk.

Shared by the command line, the prune job (:mod:`decayprune.experiment`) and the benchmarks.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from decayprune.config import ModelConfig, RunConfig
from decayprune.data import DatasetSplits, TensorLoader, load_dataset
from decayprune.models import create, model_accepts
from decayprune.train import save_safetensors_atomic, set_seed

__all__ = [
    "CLIError",
    "build_model",
    "example_input",
    "load_splits",
    "load_weights",
    "make_loaders",
    "model_kwargs",
    "package_version",
    "save_weights",
]


class CLIError(Exception):
    """A user-facing error: ``decayprune.cli.main`` prints its message and returns exit code 2."""


def load_splits(cfg: RunConfig) -> DatasetSplits:
    """Load the dataset a run config names (with its subsets).

    Raises:
        FileNotFoundError: If the dataset's files cannot be found.
    """
    return load_dataset(
        cfg.data.name,
        cfg.data.data_dir,
        seed=cfg.data.seed,
        train_subset=cfg.data.train_subset,
        test_subset=cfg.data.test_subset,
    )


def model_kwargs(name: str, image_size: Sequence[int]) -> dict[str, Any]:
    """Extra constructor arguments a model needs from the data (``image_size`` for ``mlp``)."""
    return {"image_size": tuple(int(v) for v in image_size)} if model_accepts(name, "image_size") else {}


def build_model(
    cfg: ModelConfig, *, num_classes: int, in_channels: int, image_size: Sequence[int], seed: int | None = None
) -> nn.Module:
    """Create the model a config names and load ``cfg.weights`` into it when set.

    ``seed`` seeds the weight initialisation, so runs that differ only in ``train.seed`` start
    from different initial weights and runs with the same seed from the same ones.

    Example:
        >>> m = build_model(ModelConfig(name="small_cnn"), num_classes=10, in_channels=1,
        ...                 image_size=(8, 8))
        >>> m(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    if seed is not None:
        set_seed(seed)
    model = create(
        cfg.name,
        num_classes=num_classes,
        in_channels=in_channels,
        width=cfg.width,
        **model_kwargs(cfg.name, image_size),
    )
    if cfg.weights is not None:
        load_weights(model, cfg.weights)
    return model


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a ``.safetensors`` state dict into ``model`` (strict, no unpickling).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        CLIError: If the file is not a safetensors file or does not fit the model.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file '{path}' does not exist")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CLIError(f"cannot read weights '{path}' as safetensors: {exc}") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    mismatched = [k for k in own if k in tensors and tuple(own[k].shape) != tuple(tensors[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                parts.append(
                    f"{len(keys)} {label} tensors ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                )
        for k in mismatched[:3]:
            parts.append(
                f"{k} has shape {tuple(tensors[k].shape)} in the file, {tuple(own[k].shape)} in the model"
            )
        raise CLIError(
            f"weights '{path}' do not fit the model: {'; '.join(parts)}. "
            "Check model.name, model.width and the dataset (classes, channels)."
        )
    model.load_state_dict(tensors, strict=True)


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s state dict as safetensors, atomically (tensors copied to CPU)."""
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    save_safetensors_atomic(Path(path), tensors)
    return Path(path)


def make_loaders(splits: DatasetSplits, cfg: RunConfig) -> tuple[TensorLoader, TensorLoader]:
    """The shuffled (augmented where the data suits it) train loader and the test loader."""
    settings = cfg.run_settings
    train = TensorLoader(
        splits.train_images,
        splits.train_labels,
        settings.batch_size,
        shuffle=True,
        augment=splits.augment,
        seed=settings.seed,
    )
    test = TensorLoader(splits.test_images, splits.test_labels, settings.batch_size, shuffle=False)
    return train, test


def example_input(splits: DatasetSplits, batch_size: int = 1) -> torch.Tensor:
    """A zero batch shaped like the dataset's images, for cost counting."""
    return torch.zeros(batch_size, splits.in_channels, *splits.image_size)


def package_version() -> str:
    """The installed decayprune version, or ``unknown`` when running from an uninstalled tree."""
    try:
        return metadata.version("decayprune")
    except metadata.PackageNotFoundError:
        return "unknown"
