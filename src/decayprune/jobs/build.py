"""Turn a run config into the pieces of a run: data, model, loaders, weights on disk.

Shared by the jobs, the command line and the benchmarks.

Example:
    >>> from decayprune.config import ModelConfig
    >>> m = build_model(ModelConfig(name="small_cnn"), num_classes=10, in_channels=1, image_size=(8, 8))
    >>> m(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..config import ModelConfig, RunConfig
from ..data import DatasetSplits, TensorLoader, TokenSplits, load_dataset
from ..errors import DataError, RunFolderError, UserError, WeightsError
from ..files import save_safetensors_atomic
from ..models import create, model_accepts, resolve_model
from ..train import get_rank, get_world_size, set_seed
from ..train.losses import Loss, make_loss

#: What a train or prune job runs on: images with one label each, or token sequences.
RunData = DatasetSplits | TokenSplits

__all__ = [
    "RunData",
    "arch_spec",
    "build_model",
    "example_input",
    "input_shape",
    "load_data",
    "load_splits",
    "model_for_data",
    "run_loss",
    "load_weights",
    "make_loaders",
    "model_kwargs",
    "package_version",
    "save_weights",
]


def load_splits(cfg: RunConfig) -> DatasetSplits:
    """Load the image dataset a run config names (with its subsets).

    Raises:
        DataError: If the dataset's files are missing, truncated or malformed (one clear line).
        UserError: The config names a token dataset (only train and prune jobs take one).
    """
    data = load_data(cfg)
    if isinstance(data, TokenSplits):
        raise UserError(
            f"dataset {cfg.data.name!r} holds token sequences; this command takes image datasets "
            "(train and prune runs take both)"
        )
    return data


def load_data(cfg: RunConfig) -> RunData:
    """Load the dataset a run config names (with its subsets): image splits or token splits.

    Raises:
        DataError: If the dataset's files are missing, truncated or malformed (one clear line).
    """
    try:
        return load_dataset(
            cfg.data.name,
            cfg.data.data_dir,
            seed=cfg.data.seed,
            train_subset=cfg.data.train_subset,
            test_subset=cfg.data.test_subset,
            image_size=cfg.data.image_size,
        )
    except UserError:
        raise
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, EOFError):
            text = f"a file ended early (truncated download?): {text}"
        raise DataError(f"cannot load dataset {cfg.data.name!r}: {text}") from exc


def model_kwargs(name: str, image_size: Sequence[int]) -> dict[str, Any]:
    """Extra constructor arguments a model needs from the data (``image_size`` for ``mlp``)."""
    return {"image_size": tuple(int(v) for v in image_size)} if model_accepts(name, "image_size") else {}


def input_shape(data: RunData) -> list[int]:
    """The shape of one sample: ``[C, H, W]`` of an image, ``[seq_len]`` of a token sequence."""
    return list(data.input_shape)


def arch_spec(cfg: ModelConfig, splits: RunData) -> dict[str, Any]:
    """How to rebuild the unpruned model (stored in ``pruned.json``; read by :func:`decayprune.load_pruned`).

    Factory and library models record their spec and ``model.kwargs``; rebuilding them needs
    the model passed to :func:`decayprune.load_pruned` (the registry does not know them).
    """
    if not cfg.registered or isinstance(splits, TokenSplits):
        spec = {"name": cfg.name, "kwargs": dict(cfg.kwargs), "input_shape": input_shape(splits)}
        return {**spec, "input_dtype": "int64"} if isinstance(splits, TokenSplits) else spec
    kwargs: dict[str, Any] = {
        "num_classes": splits.num_classes,
        "in_channels": splits.in_channels,
        "width": cfg.width,
        **model_kwargs(cfg.name, splits.image_size),
    }
    if "image_size" in kwargs:
        kwargs["image_size"] = list(kwargs["image_size"])
    return {"name": cfg.name, "kwargs": kwargs, "input_shape": [splits.in_channels, *splits.image_size]}


def build_model(
    cfg: ModelConfig, *, num_classes: int, in_channels: int, image_size: Sequence[int], seed: int | None = None
) -> nn.Module:
    """Create the model a config names and load ``cfg.weights`` into it when set.

    ``seed`` seeds the weight initialisation, so runs that differ only in their seed start
    from different initial weights and runs with the same seed from the same ones.
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


def model_for_data(cfg: ModelConfig, data: RunData, *, seed: int | None = None) -> nn.Module:
    """The model of a run: a registered one sized from the data, or a factory/library model from ``cfg.kwargs``.

    Raises:
        UserError: the spec cannot be built, or a language model's vocabulary is smaller than the data's.
    """
    if cfg.registered and isinstance(data, DatasetSplits):
        return build_model(
            cfg, num_classes=data.num_classes, in_channels=data.in_channels, image_size=data.image_size, seed=seed
        )
    if seed is not None:
        set_seed(seed)
    model = resolve_model(cfg.name, **cfg.kwargs)
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    wanted = getattr(getattr(model, "config", None), "image_size", None)  # e.g. a transformers ViT
    if isinstance(data, DatasetSplits) and isinstance(wanted, int) and tuple(data.image_size) != (wanted, wanted):
        raise UserError(
            f"{cfg.name!r} takes {wanted}x{wanted} images, dataset {data.name!r} has "
            f"{data.image_size[0]}x{data.image_size[1]}: set data.image_size: [{wanted}, {wanted}] (imagefolder) "
            "or model.kwargs.image_size"
        )
    if isinstance(data, TokenSplits) and isinstance(vocab, int) and vocab < data.vocab_size:
        raise UserError(
            f"model.kwargs: {cfg.name!r} has vocab_size {vocab}, but dataset {data.name!r} has tokens up to "
            f"{data.vocab_size - 1}; set model.kwargs.vocab_size to at least {data.vocab_size}"
        )
    if cfg.weights is not None:
        load_weights(model, cfg.weights)
    return model


def run_loss(cfg: RunConfig) -> Loss:
    """The loss a run config names (``loss`` section, label smoothing of the run's training settings)."""
    return make_loss(
        cfg.loss.name, ignore_index=cfg.loss.ignore_index, label_smoothing=cfg.run_settings.label_smoothing
    )


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a ``.safetensors`` state dict into ``model`` (strict, no unpickling).

    Raises:
        WeightsError: If the file is missing, is not safetensors, or does not fit the model.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' does not exist")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"cannot read weights '{path}' as safetensors: {exc}") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    mismatched = [k for k in own if k in tensors and tuple(own[k].shape) != tuple(tensors[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                parts.append(f"{len(keys)} {label} tensors ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
        for k in mismatched[:3]:
            parts.append(f"{k} has shape {tuple(tensors[k].shape)} in the file, {tuple(own[k].shape)} in the model")
        hint = (
            " It looks like a pruned model: load it with its .json spec (pruned.json next to it) or --run."
            if mismatched and path.with_suffix(".json").is_file()
            else " Check model.name, model.width and the dataset (classes, channels)."
        )
        raise WeightsError(f"weights '{path}' do not fit the model: {'; '.join(parts)}.{hint}")
    model.load_state_dict(tensors, strict=True)


def reuse_phase_weights(
    model: nn.Module, weights: Path, meta_file: Path, wanted: str, made: str
) -> dict[str, Any] | None:
    """Load a finished phase's ``weights`` into ``model`` if its ``meta_file`` records the hash ``wanted``.

    Returns the phase's ``{"epochs", "time_s"}`` from the meta file, or None when no weights were saved.
    ``made`` names what the weights were made for in the error (e.g. "trained for other model settings").

    Raises:
        RunFolderError: The weights exist but their meta file is missing or records another hash.
    """
    if not weights.is_file():
        return None
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    if meta.get("config_hash") != wanted:
        raise RunFolderError(
            f"'{weights}' was {made} (or has no {meta_file.name}); use --overwrite to start this run afresh"
        )
    load_weights(model, weights)
    return {"epochs": int(meta.get("epochs", 0)), "time_s": float(meta.get("time_s", 0.0))}


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s state dict as safetensors, atomically (tensors copied to CPU)."""
    save_safetensors_atomic(Path(path), model.state_dict(), metadata=metadata)
    return Path(path)


def make_loaders(splits: RunData, cfg: RunConfig) -> tuple[TensorLoader, TensorLoader]:
    """The shuffled (augmented where the data suits it) train loader and the test loader.

    Token data yields ``(tokens, tokens)`` batches (a causal-LM loss shifts them). Under
    ``torch.distributed`` each rank gets its shard of both (``batch_size`` per process): training
    shards padded to equal length, test shards disjoint (metrics are all-reduced).
    """
    settings = cfg.run_settings
    rank, world_size = get_rank(), get_world_size()
    if isinstance(splits, TokenSplits):
        train_x, train_y, test_x, test_y = (
            splits.train_tokens,
            splits.train_tokens,
            splits.test_tokens,
            splits.test_tokens,
        )
        augment = False
    else:
        train_x, train_y, test_x, test_y = (
            splits.train_images,
            splits.train_labels,
            splits.test_images,
            splits.test_labels,
        )
        augment = splits.augment
    train = TensorLoader(
        train_x,
        train_y,
        settings.batch_size,
        shuffle=True,
        augment=augment,
        seed=settings.seed,
        rank=rank,
        world_size=world_size,
    )
    test = TensorLoader(
        test_x,
        test_y,
        settings.batch_size,
        shuffle=False,
        pad=False,
        rank=rank,
        world_size=world_size,
    )
    return train, test


def example_input(splits: RunData, batch_size: int = 1) -> torch.Tensor:
    """A zero batch shaped like the dataset's images (or token sequences), for tracing and cost counting."""
    if isinstance(splits, TokenSplits):
        return torch.zeros(batch_size, splits.seq_len, dtype=torch.int64)
    return torch.zeros(batch_size, splits.in_channels, *splits.image_size)


def package_version() -> str:
    """The installed decayprune version, or ``unknown`` when running from an uninstalled tree."""
    try:
        return metadata.version("decayprune")
    except metadata.PackageNotFoundError:
        return "unknown"
