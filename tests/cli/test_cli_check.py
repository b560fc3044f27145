"""``decayprune check``: a passing CNN, a sigmoid-gated model refused for exactness, bad input."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch.nn as nn
from cli_testing import run_cli


class GatedChannels(nn.Module):
    """conv -> sigmoid -> conv: zeroing a channel of the first conv leaves sigmoid(0) = 0.5 downstream."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3)
        self.b = nn.Conv2d(8, 8, 3)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.head(self.b(self.a(x).sigmoid()).relu())


@pytest.fixture()
def factory_module(monkeypatch: pytest.MonkeyPatch) -> str:
    module = types.ModuleType("decayprune_check_models")
    module.gated = GatedChannels  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module.__name__


def test_registered_cnn_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, ["check", "--model", "small_cnn", "--kwarg", "in_channels=1", "--input-shape", "1,8,8"]
    )
    assert code == 0
    assert out.startswith("small_cnn: PASS") and "compaction error" in out


def test_json_report_names_refused_groups(capsys: pytest.CaptureFixture[str], factory_module: str) -> None:
    code, out, _ = run_cli(
        capsys, ["check", "--model", f"{factory_module}:gated", "--input-shape", "3,12,12", "--json"]
    )
    report = json.loads(out)
    refused = {group["layer"]: group["kind"] for group in report["frozen"]}
    assert refused.get("a") == "inexact"  # sigmoid(0) != 0: refused, not pruned wrongly
    assert report["error"] is None or report["error"] <= report["tolerance"]
    assert code == (0 if report["passed"] else 1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "--model", "resnet2"], "did you mean"),
        (["check", "--model", "small_cnn", "--target-macs-fraction", "1.5"], "between 0 and 1"),
        (["check", "--model", "small_cnn", "--seq-len", "4", "--input-shape", "1,8,8"], "not both"),
        (["check", "--model", "small_cnn", "--kwarg", "no_equals"], "KEY=VALUE"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, _, err = run_cli(capsys, argv)
    assert code == 2
    assert message in err
