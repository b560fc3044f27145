"""Element methods from a YAML config: validation at load and `decayprune prune` end to end on digits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from rich.console import Console
from safetensors import safe_open
from sklearn.datasets import load_digits

from decayprune import Pruner, create_model
from decayprune.config import DecaySettings, PruneSettings, load_config
from decayprune.errors import ConfigError
from decayprune.jobs import results as results_module
from decayprune.jobs import run_prune_job
from decayprune.jobs.build import build_model, load_splits, make_loaders
from decayprune.methods import ElementMagnitude
from decayprune.registry import METHODS
from decayprune.sparse import load_masked
from decayprune.train import evaluate

QUIET = Console(quiet=True)
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "prune_digits_sparse.yaml"
SMALL = [
    "data.train_subset=400",
    "data.test_subset=200",
    "pretrain.epochs=2",
    "pretrain.device=cpu",
    "finetune.epochs=2",
    "finetune.device=cpu",
    "prune.iterative_steps=2",
    "prune.decay.steps=3",
]


def _refused(values: dict, *words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, values={"prune": values})
    for word in words:
        assert word in str(info.value), str(info.value)


def test_the_shipped_config_validates() -> None:
    prune = load_config(CONFIG).prune
    assert prune is not None and prune.prunes_elements() and prune.target_sparsity == 0.9


def test_settings_an_element_method_cannot_take_are_refused_at_load() -> None:
    _refused({"method": "magnitude_elements", "target_macs_fraction": 0.5}, "target_sparsity", "target_macs_fraction")
    _refused({"method": "snip_elements", "target_sparsity": 0.5, "speed_up": 2.0}, "target_sparsity")
    _refused({"method": "depgraph", "target_sparsity": 0.5}, "target_sparsity", "magnitude_elements")
    _refused({"method": "magnitude_elements", "target_sparsity": 0.5, "round_to": 8}, "round_to")
    _refused({"method": "magnitude_elements", "target_sparsity": 0.5, "criterion": "l1_filter"}, "criterion")
    _refused(
        {"method": "magnitude_elements", "target_sparsity": 0.5, "method_options": {"schedule": "exp"}}, "schedule"
    )
    _refused({"method": "snip_elements", "target_sparsity": 0.5, "method_options": {"scope": "layer"}}, "scope")
    _refused({"method": "snip_elements", "target_sparsity": 1.0}, "target_sparsity")


@pytest.mark.parametrize("method", ["magnitude_elements", "snip_elements"])
def test_prune_job_saves_masks_that_reload_to_the_same_outputs(tmp_path: Path, method: str) -> None:
    options = {"batches": 2} if method == "snip_elements" else {"schedule": "cubic", "scope": "global"}
    overrides = [*SMALL, f"prune.method={method}", f"output_dir={tmp_path}", f"name={method}"]
    cfg = load_config(CONFIG, overrides, values={"prune.method_options": options})
    assert cfg.prune is not None
    record = run_prune_job(cfg, progress=False, console=QUIET)
    run = cfg.run_dir
    assert json.loads((run / "result.json").read_text()) == record
    documented = set(re.findall(r"``([a-z_0-9]+)``", results_module.__doc__ or ""))
    assert set(record) <= documented and set(record["layer_sparsity"][0]) <= documented
    assert record["method"] == method and record["target_sparsity"] == 0.9
    assert record["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert record["pruned_weights"] == round(0.9 * record["masked_weights"])
    assert sum(r["pruned"] for r in record["layer_sparsity"]) == record["pruned_weights"]
    assert not (run / "pruned.safetensors").exists()
    with safe_open(str(run / "masked.safetensors"), framework="pt") as handle:
        assert (handle.metadata() or {})["format"] == "decayprune.masks/1"
    splits = load_splits(cfg)
    model = build_model(
        cfg.model,
        num_classes=splits.num_classes,
        in_channels=splits.in_channels,
        image_size=splits.image_size,
        seed=123,
    ).eval()
    masks = load_masked(run / "masked.safetensors", model)
    assert masks.sparsity() == pytest.approx(record["sparsity"], abs=1e-12)
    assert int(sum(int((w == 0).sum()) for w in masks.weights)) >= record["pruned_weights"]
    # The reloaded model gives the fine-tuned masked model's accuracy: the same function.
    _, test_loader = make_loaders(splits, cfg)
    assert float(evaluate(model, test_loader, device="cpu")["top1"]) == pytest.approx(record["masked_top1"], abs=1e-9)
    x = torch.randn(4, splits.in_channels, *splits.image_size)
    again = build_model(
        cfg.model, num_classes=splits.num_classes, in_channels=splits.in_channels, image_size=splits.image_size, seed=7
    ).eval()
    load_masked(run / "masked.safetensors", again)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def _train(settings: PruneSettings, steps: int = 48) -> tuple[Pruner, torch.optim.Optimizer, list[float]]:
    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 128, 32)]
    pruner = Pruner(model, x[:1], settings, total_steps=steps, calibration_data=batches)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner.bind(opt)
    committed = []
    for step in range(steps):
        inputs, labels = batches[step % len(batches)]
        opt.zero_grad()
        F.cross_entropy(model(inputs), labels).backward()
        pruner.after_backward()
        opt.step()
        pruner.after_step()
        committed.append(pruner.summary()["sparsity_committed"])
    return pruner, opt, committed


@pytest.mark.parametrize("method", ["magnitude_elements", "snip_elements"])
@pytest.mark.parametrize("policy", ["oneshot", "sp"])
def test_the_pruner_masks_weights_to_the_target_sparsity(method: str, policy: str) -> None:
    settings = PruneSettings(
        method=method, target_sparsity=0.8, iterative_steps=3, decay=DecaySettings(policy=policy, steps=6)
    )
    pruner, opt, committed = _train(settings)
    assert pruner.masks is not None and pruner.structures is pruner.masks
    with pytest.raises(RuntimeError, match="finish_masks"):
        pruner.compact()
    masks = pruner.finish_masks()
    assert masks.sparsity() == pytest.approx(0.8, abs=1e-3)
    for w, keep in zip(masks.weights, masks.masks().values()):
        assert torch.all(w[~keep] == 0) and torch.all(opt.state[w]["momentum_buffer"][~keep] == 0)
    kinds = {e["kind"] for e in pruner.events}
    assert kinds == ({"oneshot"} if policy == "oneshot" else {"start", "complete"})
    steps = pruner.schedule.steps
    if method == "magnitude_elements":  # the cubic schedule: a part of the target at each selection point
        assert 0 < committed[steps[0] - 1] < committed[steps[1] - 1] < committed[steps[2] - 1]
    else:  # SNIP: the whole target at the first point
        assert committed[steps[0] - 1] == pytest.approx(0.8, abs=1e-3)


def test_a_policy_the_method_cannot_take_is_refused() -> None:
    class OneshotOnly(ElementMagnitude):
        policies = ("oneshot",)

    METHODS.add("oneshot_only_test", OneshotOnly)
    try:
        with pytest.raises(ValueError, match="cannot take policy 'sp'"):
            PruneSettings(method="oneshot_only_test", target_sparsity=0.5, decay={"policy": "sp"})
        assert PruneSettings(method="oneshot_only_test", target_sparsity=0.5, decay={"policy": "oneshot"})
    finally:
        METHODS.remove("oneshot_only_test")


def test_the_readme_yaml_block_is_the_shipped_config() -> None:
    readme = (CONFIG.parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "magnitude_elements" in b]
    assert len(blocks) == 1
    assert yaml.safe_load(blocks[0]) == {"prune": yaml.safe_load(CONFIG.read_text())["prune"]}


def test_rigl_from_a_config_keeps_each_layers_count_and_grows_by_the_dense_gradient() -> None:
    settings = PruneSettings(
        method="rigl_elements", target_sparsity=0.8, method_options={"delta_t": 4, "alpha": 0.5, "end_fraction": 0.75}
    )
    assert settings.decay.policy == "oneshot"  # the policy left unset: the method's own
    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    pruner = Pruner(model, x[:1], settings, total_steps=24)
    masks = pruner.masks
    assert masks is not None and masks.sparsity() == pytest.approx(0.8, abs=1e-3)  # random ERK masks at the start
    counts = [int((~masks.pruned[masks.span(i)]).sum()) for i in range(masks.num_groups)]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner.bind(opt)
    start, seen_dense = masks.pruned.clone(), []
    for step in range(1, 25):
        opt.zero_grad()
        F.cross_entropy(model(x[:64]), y[:64]).backward()
        pruner.after_backward()
        rigl = pruner.method.rigl
        if rigl.is_update_step(step):  # the gradient RigL kept was read before the held ones were zeroed
            seen_dense.append(bool((rigl._grads[masks.pruned].abs() > 0).any()))
        opt.step()
        pruner.after_step()
        assert [int((~masks.pruned[masks.span(i)]).sum()) for i in range(masks.num_groups)] == counts
        for w, keep in zip(masks.weights, masks.masks().values()):
            assert torch.all(w[~keep] == 0)
    assert seen_dense == [True] * 4  # updates at steps 4, 8, 12, 16 (t_end = 18)
    assert not torch.equal(start, masks.pruned)  # weights were dropped and grown


def test_rigl_refuses_a_decay_policy_and_selection_points() -> None:
    _refused({"method": "rigl_elements", "target_sparsity": 0.5, "decay": {"policy": "sp"}}, "cannot take policy 'sp'")
    _refused({"method": "rigl_elements", "target_sparsity": 0.5, "method_options": {"delta_t": 0}}, "delta_t")
    _refused({"method": "rigl_elements", "target_sparsity": 0.5, "iterative_steps": 3}, "iterative_steps", "delta_t")


def test_rigl_trains_from_scratch_in_a_prune_job(tmp_path: Path) -> None:
    values = {
        "name": "rigl",
        "output_dir": str(tmp_path),
        "data": {"name": "digits", "train_subset": 400, "test_subset": 200},
        "model": {"name": "small_cnn"},
        "finetune": {"epochs": 2, "batch_size": 64, "lr": 0.05, "device": "cpu"},
        "prune": {"method": "rigl_elements", "target_sparsity": 0.9, "method_options": {"delta_t": 3}},
    }
    record = run_prune_job(load_config(None, values=values), progress=False, console=QUIET)
    assert record["method"] == "rigl_elements" and record["policy"] == "oneshot"
    assert record["epochs"]["pretrain"] == 0  # no pretrain section: sparse from the first step
    assert record["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert (tmp_path / "rigl" / "masked.safetensors").is_file()
