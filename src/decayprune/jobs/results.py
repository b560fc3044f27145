"""One result schema for every job: what ``result.json`` holds, and its writer.

``result.json`` (schema :data:`RESULT_SCHEMA`; readers should ignore fields they do not know):

Every job
    ``schema`` (int), ``kind`` (``"train"`` or ``"prune"``), ``status`` (``"ok"``, or ``"failed"``
    with ``error``: the message), ``name``, ``dataset``, ``model``, ``width``, ``seed``,
    ``input_shape`` ([C, H, W]), ``wall_time_s`` (seconds of work, summed over every invocation of
    a resumed run: training counted up to its last checkpoint, plus this invocation's measuring and
    writing), ``decayprune_version``.

``kind: "train"``
    ``epochs`` (epochs done in total), ``top1`` / ``top5`` (test accuracy, percent 0-100),
    ``test_loss``, ``test_samples``, ``macs`` (multiply-accumulates per image), ``macs_counter`` (the
    counter: ``torch_pruning+flop_counter``, see :mod:`decayprune.measure.cost`), ``params``.

``kind: "prune"``
    ``method``, ``criterion`` (null: the method's own), ``policy`` (``oneshot``, ``sp``, ``sp+sr``),
    ``decay`` (only the settings that apply: ``{}`` for oneshot; ``steps`` for sp; also ``t_rate``,
    ``t_len``, ``window``, ``cooldown`` for sp+sr), ``target_macs_fraction`` (fraction of base MACs
    kept; with a latency budget ``target_latency_fraction`` instead, and ``latency_budget``: its
    ``kind``, ``device``, ``target_fraction``, ``predicted_fraction`` (the table's prediction),
    ``measured_fraction``, ``base_ms`` and ``pruned_ms`` (timed on that device the way the table
    was), ``tolerance`` and ``within_tolerance``), ``base`` and ``final`` (each ``{top1, top5, macs,
    macs_counter, params, latency_ms, latency_iqr_ms}``:
    latency is the median of timed batch-1 CPU passes and its interquartile range),
    ``latency_threads`` (torch CPU threads while timing), ``masked_top1`` (top-1 of the fine-tuned
    model before compaction, zeroed channels still in place; equal to ``final.top1`` when
    compaction is exact), ``macs_pct`` / ``params_pct`` (final as % of base), ``delta_top1``
    (final - base, points), ``releases`` (self-rectifying releases), ``pruned_structures``,
    ``epochs`` (``{pretrain, sparse_learning, finetune}``, epochs done in total; pretrain 0 when the
    base weights were given, sparse_learning 0 without that phase), ``phase_time_s``
    (``{pretrain, sparse_learning, finetune, measure}``).

``kind: "prune"`` with a method that masks single weights (``magnitude_elements``, ``snip_elements``)
    ``target_sparsity`` instead of ``target_macs_fraction``; no compaction, so ``final`` is the
    masked model at its dense shapes (``macs_pct`` 100) and ``pruned_structures`` counts weights;
    also ``sparsity`` (fraction of the masked weights at exactly zero), ``pruned_weights``,
    ``masked_weights``, ``masked_macs_fraction`` (MACs of the masked layers a sparse kernel would
    still do, over their dense MACs) and ``layer_sparsity`` (per layer: ``layer``, ``shape``,
    ``weights``, ``pruned``, ``sparsity``). The model is in ``masked.safetensors``.

``prune/dpm_events.jsonl`` holds one line per DPM event, ``{kind, step, structure, layer}``:
``start`` (a selected structure begins to decay, sp / sp+sr), ``complete`` (it reached zero and is
pruned), ``release`` (self-rectifying gave it back, with its ``c_rate`` and ``c_len``),
``oneshot`` (zeroed at once at selection, oneshot policy) and ``forced`` (still decaying when
training ended: zeroed then).

Example:
    >>> import tempfile, pathlib, json
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "result.json"
    >>> write_result(path, {"kind": "train", "top1": 90.0})["schema"] == RESULT_SCHEMA
    True
    >>> json.loads(path.read_text())["status"]
    'ok'
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..config import DecaySettings, RunConfig
from ..files import write_json_atomic
from .build import package_version

__all__ = ["RESULT_FILE", "RESULT_SCHEMA", "applied_decay", "common_fields", "write_result"]

RESULT_SCHEMA = 2
RESULT_FILE = "result.json"


def applied_decay(decay: DecaySettings, steps: int | None = None) -> dict[str, Any]:
    """The decay settings that apply under ``decay.policy`` (none for oneshot).

    ``steps`` is the N in force when the schedule fitted it to the run (``decay.steps`` unset).

    Example:
        >>> applied_decay(DecaySettings(policy="sp", steps=7))
        {'steps': 7}
        >>> applied_decay(DecaySettings(policy="sp"), steps=12)
        {'steps': 12}
    """
    if not decay.smooth:
        return {}
    out: dict[str, Any] = {"steps": steps if steps is not None else decay.steps}
    if decay.self_rectifying:
        out.update(t_rate=decay.t_rate, t_len=decay.t_len, window=decay.window, cooldown=decay.cooldown)
    return out


def common_fields(cfg: RunConfig, kind: str, input_shape: list[int] | None = None) -> dict[str, Any]:
    """The fields every ``result.json`` starts with."""
    return {
        "schema": RESULT_SCHEMA,
        "kind": kind,
        "status": "ok",
        "name": cfg.name,
        "dataset": cfg.data.name,
        "model": cfg.model.name,
        "width": cfg.model.width,
        "seed": cfg.run_settings.seed,
        "input_shape": input_shape,
        "decayprune_version": package_version(),
    }


def _finite(value: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_result(path: str | Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write ``record`` (schema and status filled in when absent) atomically as strict JSON; returns it."""
    full = {"schema": RESULT_SCHEMA, "status": "ok", **_finite(record)}
    write_json_atomic(path, full)
    return full
