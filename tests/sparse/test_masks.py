"""Element masks: keep-at-zero under SGD momentum and Adam, DPM on conv weights, targets, report, files."""

from __future__ import annotations

import pytest
import torch
from sparse_testing import batch, small_convnet, train_steps
from torch import nn

from decayprune.config import DecaySettings
from decayprune.decay import DecayEngine
from decayprune.sparse import ElementMasks, load_masked, save_masked, select_smallest
from decayprune.structure import PrunableUnits

OPTIMIZERS = {
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
}


def test_masks_are_prunable_units_over_linear_and_conv_weights() -> None:
    net = small_convnet()
    units = ElementMasks(net, batch()[0][:1])
    assert isinstance(units, PrunableUnits)
    assert units.names == ["0", "3", "6"]
    assert units.num_structures == 4 * 9 + 6 * 4 * 9 + 3 * 24
    # MACs per weight = output positions: 8x8 for the first conv, 6x6 for the second, 1 for the linear
    assert units.macs() == 36 * 64 + 216 * 36 + 72


def test_masks_count_macs_from_dict_keyword_inputs() -> None:
    class Keyword(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = small_convnet()

        def forward(self, *, pixels: torch.Tensor) -> torch.Tensor:
            return self.net(pixels)

    model = Keyword()
    units = ElementMasks(model, {"pixels": batch()[0][:1]})
    assert units.macs() == 36 * 64 + 216 * 36 + 72


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_pruned_weights_stay_zero_in_weight_gradient_and_optimizer_state(name: str) -> None:
    net = small_convnet()
    units = ElementMasks(net)
    opt = OPTIMIZERS[name](net.parameters())
    engine = DecayEngine(units, DecaySettings(policy="oneshot"))
    engine.optimizer = opt
    train_steps(net, units, engine, opt, 3)  # optimizer state exists and is non-zero everywhere
    ids = select_smallest(units, units.producer_norms(), 0.6)
    engine.start(ids, step=3)
    history = train_steps(net, units, engine, opt, 6, start=3)
    for held, weights, states in history:
        assert held[ids].all() and int(held.sum()) == len(ids)
        assert torch.all(weights[held] == 0)
        assert states and all(torch.all(state[held] == 0) for state in states)
    assert torch.all(history[-1][1][~history[-1][0]] != 0)  # the kept weights train
    x, y = batch()
    nn.functional.cross_entropy(net(x), y).backward()
    engine.after_backward()
    assert torch.all(units.per_weight(w.grad for w in units.weights)[units.pruned] == 0)


@pytest.mark.parametrize("n", [1, 4])
def test_sp_decays_conv_weights_linearly_to_exactly_zero_in_n_steps(n: int) -> None:
    net = small_convnet()
    units = ElementMasks(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    engine = DecayEngine(units, DecaySettings(policy="sp", steps=n))
    engine.optimizer = opt
    ids = torch.tensor([0, 5, 40, 41, 200, 260])  # both convs and the linear layer
    engine.start(ids, step=0)
    l_init = units.producer_norms()[ids]
    history = train_steps(net, units, engine, opt, n + 2)
    for k, (held, weights, _s) in enumerate(history, start=1):
        if k < n:
            torch.testing.assert_close(weights[ids].abs(), l_init * (n - k) / n, rtol=1e-5, atol=0)
            assert not held[ids].any()
        else:
            assert torch.all(weights[ids] == 0) and bool(held[ids].all())


def test_global_and_per_layer_targets_and_the_report() -> None:
    net = small_convnet()
    units = ElementMasks(net)
    norms = units.producer_norms()
    ids = select_smallest(units, norms, 0.5)
    assert len(ids) == round(0.5 * units.num_structures)
    assert norms[ids].max() <= norms[torch.isin(torch.arange(units.num_structures), ids, invert=True)].min()
    per_layer = select_smallest(units, norms, {"0": 0.25, "6": 0.5}, scope="layer")
    units.set_pruned(per_layer)
    rows = {r["layer"]: r for r in units.layer_sparsity()}
    assert rows["0"]["pruned"] == 9 and rows["3"]["pruned"] == 0 and rows["6"]["pruned"] == 36
    assert rows["6"]["sparsity"] == 0.5 and rows["0"]["shape"] == [4, 1, 3, 3]
    more = select_smallest(units, norms, 0.25, scope="layer")  # layers 0 and 6 already reach 25%
    assert len(more) == round(0.25 * 216) and bool((units.layer_of[more] == 1).all())
    with pytest.raises(ValueError, match="not masked"):
        select_smallest(units, norms, {"9": 0.5}, scope="layer")
    with pytest.raises(ValueError, match="scope='layer'"):
        select_smallest(units, norms, {"0": 0.5})


def test_ignored_layers_and_bad_layer_names() -> None:
    net = small_convnet()
    assert ElementMasks(net, ignored_layers=["6"]).names == ["0", "3"]
    with pytest.raises(ValueError, match="no layer named"):
        ElementMasks(net, layers=["nope"])
    with pytest.raises(ValueError, match="BatchNorm2d"):
        ElementMasks(net, layers=["1"])


def test_saved_masked_model_round_trips_without_pickle(tmp_path) -> None:
    net = small_convnet()
    units = ElementMasks(net)
    units.set_pruned(select_smallest(units, units.producer_norms(), 0.8))
    units.zero_pruned_()
    path = tmp_path / "masked.safetensors"
    save_masked(path, net, units)
    other = small_convnet(seed=5)
    loaded = load_masked(path, other)
    assert torch.equal(loaded.pruned, units.pruned) and loaded.names == units.names
    x, _y = batch()
    net.eval(), other.eval()
    assert torch.equal(net(x), other(x))
    assert b"pickle" not in path.read_bytes()[:64]
    with torch.no_grad():
        other[0].weight.view(-1)[loaded.pruned[:36].nonzero()[0]] = 1.0
    from safetensors import safe_open
    from safetensors.torch import load_file

    from decayprune.files import save_safetensors_atomic

    tensors = load_file(str(path))
    tensors["0.weight"] = other[0].weight.detach()
    with safe_open(str(path), framework="pt") as h:
        meta = h.metadata()
    save_safetensors_atomic(path, tensors, meta)
    with pytest.raises(ValueError, match="not zero"):
        load_masked(path, small_convnet())


@pytest.mark.parametrize("policy", ["oneshot", "sp"])
def test_two_of_four_keeps_the_two_largest_of_every_group(policy: str) -> None:
    from decayprune.sparse import select_n_of_m

    net = small_convnet()
    units = ElementMasks(net)
    norms = units.producer_norms()
    ids = select_n_of_m(units, norms, 2, 4)
    engine = DecayEngine(units, DecaySettings(policy=policy, steps=2))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    engine.optimizer = opt
    engine.start(ids, step=0)
    train_steps(net, units, engine, opt, 3)
    rows = {r["layer"]: r for r in units.layer_sparsity()}
    assert rows["0"]["pruned"] == 0  # rows of 9 weights: not a multiple of 4, left dense
    for i in (1, 2):  # 4*9 = 36 and 24 weights per row
        groups = units.pruned[units.span(i)].view(-1, 4)
        assert torch.all(groups.sum(1) == 2)
        layer_norms = norms[units.span(i)].view(-1, 4)
        kept_min = torch.where(groups, torch.inf, layer_norms).min(1).values
        pruned_max = torch.where(groups, layer_norms, -torch.inf).max(1).values
        assert torch.all(pruned_max <= kept_min)
    assert torch.all(units.per_weight(units.weights)[units.pruned] == 0)
    with pytest.raises(ValueError, match="0 < n < m"):
        select_n_of_m(units, norms, 4, 4)
