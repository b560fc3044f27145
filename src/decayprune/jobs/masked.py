"""The end of a prune job whose method masks single weights: no compaction, a dense + mask file.

The run folder receives ``masked.safetensors`` (:func:`decayprune.sparse.save_masked`: every
tensor of the model, pruned weights as exact zeros, one ``uint8`` keep mask per masked layer)
instead of ``pruned.safetensors``; :func:`decayprune.sparse.load_masked` reads it back into a
model built from the same config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..pruner import Pruner
from ..sparse import save_masked

__all__ = ["MASKED_FILE", "finish_masked", "save_masked_model"]

MASKED_FILE = "masked.safetensors"


def finish_masked(pruner: Pruner) -> dict[str, Any]:
    """Finish the masks (pending decays zeroed) and return the ``result.json`` fields of the masks.

    Fields: ``target_sparsity``, ``sparsity`` (fraction of the masked weights at zero),
    ``pruned_weights``, ``masked_weights``, ``masked_macs_fraction`` (MACs of the masked layers
    a sparse kernel would still do, over their dense MACs) and ``layer_sparsity`` (per layer:
    ``layer``, ``shape``, ``weights``, ``pruned``, ``sparsity``).
    """
    masks = pruner.finish_masks()
    return {
        "target_sparsity": pruner.settings.target_sparsity,
        "sparsity": masks.sparsity(),
        "pruned_weights": int(masks.pruned.sum()),
        "masked_weights": masks.num_structures,
        "masked_macs_fraction": masks.macs() / float(masks.macs_per_weight.sum()),
        "layer_sparsity": masks.layer_sparsity(),
    }


def save_masked_model(pruner: Pruner, run_dir: Path) -> Path:
    """Write the pruner's model and masks to ``run_dir / masked.safetensors`` (the model moves to the CPU)."""
    assert pruner.masks is not None, "save_masked_model is for methods that prune single weights"
    path = run_dir / MASKED_FILE
    save_masked(path, pruner.model.to("cpu"), pruner.masks)
    return path
