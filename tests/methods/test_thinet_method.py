"""The ``thinet`` method: greedy selection plus least-squares reconstruction at oneshot zeroing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from decayprune import DecaySettings, Pruner, PruneSettings, TrainSettings, UserError, create_model

X = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.arange(32) % 4


def run(reconstruct: bool) -> tuple[torch.nn.Module, Pruner]:
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=4, in_channels=1)
    settings = PruneSettings(
        method="thinet",
        target_macs_fraction=0.5,
        iterative_steps=1,
        decay=DecaySettings(policy="oneshot"),
        method_options={"reconstruct": reconstruct, "batches": 1},
        criterion_options={"batches": 1},
    )
    pruner = Pruner(model, X[:1], settings, total_steps=4, calibration_data=[(X, Y)])
    opt = pruner.build_optimizer(TrainSettings(lr=1e-6, device="cpu"))
    for _ in range(4):
        opt.zero_grad()
        F.cross_entropy(model(X), Y).backward()
        pruner.after_backward()
        opt.step()
        pruner.after_step()
    return model, pruner


def test_reconstruction_rescales_the_kept_inputs_and_keeps_outputs_closer() -> None:
    torch.manual_seed(0)
    reference = create_model("small_cnn", num_classes=4, in_channels=1).eval()
    rebuilt, p1 = run(True)
    plain, p2 = run(False)
    assert torch.equal(p1.structures.pruned, p2.structures.pruned) and int(p1.structures.pruned.sum()) > 0
    changed = [
        n for (n, a), (_m, b) in zip(rebuilt.named_parameters(), plain.named_parameters(), strict=True)
        if not torch.allclose(a, b, atol=1e-5)
    ]  # fmt: skip
    assert changed  # some consumer's kept columns were rescaled
    # Each rescaled convolution's kept outputs lie closer to the unpruned model's than without it.
    closer = 0
    for name in changed:
        module = name.rpartition(".")[0]
        outs = [capture(m, module) for m in (reference, rebuilt, plain)]
        kept = outs[2].flatten(2).abs().sum((0, 2)) > 0
        err = [float((o[:, kept] - outs[0][:, kept]).norm()) for o in outs[1:]]
        closer += err[0] < err[1]
    assert closer == len(changed)


def capture(model: torch.nn.Module, name: str) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    handle = model.get_submodule(name).register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    model.eval()
    with torch.no_grad():
        model(X)
    handle.remove()
    return seen[0]


def test_reconstruction_is_refused_outside_oneshot() -> None:
    settings = PruneSettings(
        method="thinet",
        target_macs_fraction=0.5,
        decay=DecaySettings(policy="sp", steps=2),
        method_options={"reconstruct": True},
    )
    with pytest.raises(UserError, match="oneshot"):
        Pruner(create_model("small_cnn", num_classes=4, in_channels=1), X[:1], settings, total_steps=4,
               calibration_data=[(X, Y)])  # fmt: skip
