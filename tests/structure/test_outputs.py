"""Output protection: channels that reach any model output are never prunable."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from decayprune.errors import UserError
from decayprune.structure import StructureSet, compact
from decayprune.structure.outputs import resolve_ignored


class _PoolHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 8, 3)
        self.head = nn.Conv2d(8, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.head(F.relu(self.body(x))), 1).flatten(1)


class _LogSoftmax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.head(F.relu(self.body(x))), dim=-1)


class _DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.mid = nn.Linear(8, 6)
        self.head = nn.Linear(6, 10)
        self.aux = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> dict:
        h = F.relu(self.body(x))
        m = F.relu(self.mid(h))
        return {"logits": self.head(m), "extra": (self.aux(m), h)}


@pytest.mark.parametrize("cls, shape", [(_PoolHead, (1, 3, 8, 8)), (_LogSoftmax, (1, 4))])
def test_head_behind_pooling_or_log_softmax_is_protected(cls: type, shape: tuple) -> None:
    s = StructureSet(cls(), torch.randn(*shape))
    assert [layer.name for layer in s.layers] == ["body"]
    assert [(f.layer, f.kind) for f in s.frozen] == [("head", "output")]


def test_dict_and_tuple_outputs_are_protected_and_compaction_keeps_every_output_shape() -> None:
    torch.manual_seed(0)
    net = _DictOut()
    x = torch.randn(5, 4)
    s = StructureSet(net, x[:1])
    # head, aux: outputs; body: its activations are an output too (h); mid feeds only layers.
    assert [layer.name for layer in s.layers] == ["mid"]
    assert {f.layer for f in s.frozen if f.kind == "output"} == {"head", "aux", "body"}
    s.set_pruned([0, 2])
    s.zero_pruned_()
    with torch.no_grad():
        ref = net(x)
    compact(s)
    with torch.no_grad():
        out = net(x)
    assert out["logits"].shape == (5, 10) and out["extra"][0].shape == (5, 3) and out["extra"][1].shape == (5, 8)
    torch.testing.assert_close(out["logits"], ref["logits"], rtol=1e-5, atol=1e-6)


def test_protection_can_be_switched_off() -> None:
    s = StructureSet(_LogSoftmax(), torch.randn(1, 4), ignore_classifier=False)
    assert sorted(layer.name for layer in s.layers) == ["body", "head"]


def test_ignored_types_by_class_and_name_keep_groups_whole() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.PReLU(8), nn.Linear(8, 2))
    s = StructureSet(net, torch.randn(1, 4), ignored_types=["PReLU"])
    assert [layer.name for layer in s.layers] == ["0"]
    assert [(f.layer, f.kind) for f in s.frozen if f.layer == "2"] == [("2", "ignored")]
    s2 = StructureSet(net, torch.randn(1, 4), ignored_types=[nn.Linear])
    assert s2.layers == []


def test_ignored_names_are_checked() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert resolve_ignored(net, ["0"]) == [net[0]]
    with pytest.raises(UserError, match="'nope'|nope"):
        resolve_ignored(net, ["nope"])
    with pytest.raises(UserError, match="Conv2d.*Linear|module types"):
        resolve_ignored(net, [], ["Conv2d"])
