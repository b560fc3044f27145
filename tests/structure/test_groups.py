"""ChannelGroup: ids, the root-channel -> unit map, slices and their modules, sites."""

from __future__ import annotations

import torch
import torch.nn as nn

from decayprune.structure import CONSUMER, PRODUCER, ParamSlice, StructureSet


def _gn_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 1),
        nn.GroupNorm(4, 8),
        nn.ReLU(),
        nn.Conv2d(8, 2, 1),
    )


def test_ids_span_and_local_cover_the_unit_space() -> None:
    s = StructureSet(_gn_net(), torch.zeros(1, 1, 4, 4), ignore_classifier=False)
    ids = torch.cat([g.ids for g in s.layers])
    assert ids.tolist() == list(range(s.num_structures))
    values = torch.arange(s.num_structures)
    for g in s.layers:
        assert values[g.span].tolist() == g.ids.tolist()
        assert g.local(g.ids).tolist() == list(range(g.size))
        assert s.group_of(int(g.ids[0])) is g and s.group_name(int(g.ids[-1])) == g.name


def test_unit_ids_follow_groupnorm_blocks_not_a_modulo() -> None:
    s = StructureSet(_gn_net(), torch.zeros(1, 1, 4, 4), ignore_classifier=False)
    gn_group = next(g for g in s.layers if g.block > 1)
    assert (gn_group.block, gn_group.size) == (2, 4)
    roots = torch.arange(gn_group.num_channels)
    assert gn_group.unit_ids(roots).tolist() == [gn_group.first + c // 2 for c in range(8)]
    modulo = (gn_group.first + roots % gn_group.size).tolist()  # the hand formula the README used to show
    assert gn_group.unit_ids(roots).tolist() != modulo
    for sl, ids in gn_group.slices_of():  # every slice position maps through the same rule
        assert ids.tolist() == gn_group.unit_ids(sl.roots).tolist()


def test_unit_ids_follow_grouped_convolutions() -> None:
    net = nn.Sequential(
        nn.Conv2d(4, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(), nn.Conv2d(8, 2, 1)
    )
    s = StructureSet(net, torch.zeros(1, 4, 4, 4))
    g = next(g for g in s.layers if g.name == "0")
    assert g.channel_groups == 2 and g.size == 4
    assert g.unit_ids(torch.arange(8)).tolist() == [g.first + c % 4 for c in range(8)]
    assert g.roots_of(torch.tensor([1])).tolist() == [1, 5]


def test_slices_know_their_modules_and_sites() -> None:
    net = _gn_net()
    s = StructureSet(net, torch.zeros(1, 1, 4, 4))
    by_name = {g.name: g for g in s.layers}
    first = by_name["0"]
    assert first.modules(PRODUCER) == [net[0], net[1]] and first.modules(CONSUMER) == [net[3]]
    assert all(sl.role == PRODUCER for sl in first.producers) and all(sl.role == CONSUMER for sl in first.consumers)
    assert {sl.attribute for sl in first.producers} == {"weight", "bias"}
    assert [m for m, _pos, _ids in first.norm_sites()] == [net[1]]
    assert [m for m, _pos, _ids in first.activation_sites()] == [net[1]]  # the BN, before the ReLU
    gn_group = by_name["3"]
    assert gn_group.norm_sites() == []  # only BatchNorm counts as a norm site
    assert [m for m, _pos, _ids in gn_group.activation_sites()] == [net[3]]  # so the conv is the activation


def test_add_and_remove_slice() -> None:
    s = StructureSet(_gn_net(), torch.zeros(1, 1, 4, 4), ignore_classifier=False)
    g = s.layers[0]
    count = len(g.slices)
    extra = ParamSlice("x", torch.zeros(8), 0, torch.arange(8), torch.arange(8), PRODUCER)
    g.add_slice(extra, g.unit_ids(torch.arange(8)))
    assert len(g.slices) == len(g.structure_ids) == count + 1 and extra.owner is None
    g.remove_slice(extra)
    assert len(g.slices) == len(g.structure_ids) == count and all(sl is not extra for sl in g.slices)
