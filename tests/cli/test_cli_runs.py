"""train / prune / eval / measure / export through the command line, on tiny digits runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_testing import PRUNE_TINY, TINY, run_cli
from safetensors.torch import load_file

from decayprune.cli import main
from decayprune.config import load_config
from decayprune.jobs import load_model_files
from decayprune.measure import count_cost
from decayprune.models import create


def _train(capsys: pytest.CaptureFixture[str], out: Path, *extra: str) -> tuple[int, str, str]:
    argv = ["train", *TINY, "--set", "train.epochs=1", "--output-dir", str(out), "--name", "tiny", "--no-progress"]
    return run_cli(capsys, argv + list(extra))


def test_train_writes_run_folder(trained_run: Path) -> None:
    names = {p.name for p in trained_run.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "checkpoint", "model.safetensors", "model.json", "result.json"} <= names
    cfg = load_config(trained_run / "config.yaml")
    assert cfg.name == "tiny" and cfg.train.epochs == 1 and cfg.data.train_subset == 96
    result = json.loads((trained_run / "result.json").read_text(encoding="utf-8"))
    assert result["schema"] == 2 and result["kind"] == "train" and result["status"] == "ok" and result["epochs"] == 1
    assert 0.0 <= result["top1"] <= result["top5"] <= 100.0 and result["test_samples"] == 48
    model = create("small_cnn", num_classes=10, in_channels=1)
    cost = count_cost(model, torch.zeros(1, 1, 8, 8))
    assert (result["macs"], result["params"]) == (cost.macs, cost.params)
    model.load_state_dict(load_file(str(trained_run / "model.safetensors")))


def test_eval_reproduces_train_result(capsys: pytest.CaptureFixture[str], trained_run: Path) -> None:
    result = json.loads((trained_run / "result.json").read_text(encoding="utf-8"))
    argv = ["eval", "--config", str(trained_run / "config.yaml"), "--weights", str(trained_run / "model.safetensors")]
    code, out, err = run_cli(capsys, [*argv, "--json"])
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["samples"] == 48 and metrics["top1"] == pytest.approx(result["top1"])
    code, out, err = run_cli(capsys, ["eval", "--run", str(trained_run)])
    assert code == 0, err
    assert f"{result['top1']:.2f}%" in out


def test_eval_refuses_weights_of_another_model(
    capsys: pytest.CaptureFixture[str], trained_run: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "w.safetensors"  # no .json spec next to it: read as weights of the configured model
    plain.write_bytes((trained_run / "model.safetensors").read_bytes())
    code, _, err = run_cli(capsys, ["eval", "--weights", str(plain), "--set", "model.width=2", *TINY])
    assert code == 2 and "Traceback" not in err
    assert "do not fit the model" in err


def test_train_run_folder_safety(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, ["train", "--resume", "--output-dir", str(tmp_path), "--name", "never", *TINY])
    assert code == 2 and "nothing to resume" in err
    assert _train(capsys, tmp_path)[0] == 0
    code, _, err = _train(capsys, tmp_path)
    assert code == 2 and "already holds files" in err and "--overwrite" in err
    # A resume that would change the result is refused, naming the key.
    code, _, err = _train(capsys, tmp_path, "--resume", "--set", "train.lr=0.5")
    assert code == 2 and "train.lr changed" in err
    # The same config resumes (nothing left to do: one epoch was the whole run); totals are kept.
    before = json.loads((tmp_path / "tiny" / "result.json").read_text())
    code, _, err = _train(capsys, tmp_path, "--resume", "--set", "train.device=cpu")
    assert code == 0, err
    after = json.loads((tmp_path / "tiny" / "result.json").read_text())
    assert after["epochs"] == 1 and after["top1"] == before["top1"]
    assert after["wall_time_s"] >= before["wall_time_s"] - 1.0  # training time is carried over, not reset
    (tmp_path / "tiny" / "stale.txt").write_text("old")
    code, _, err = _train(capsys, tmp_path, "--overwrite")
    assert code == 0, err
    assert not (tmp_path / "tiny" / "stale.txt").exists()


def test_prune_run_writes_result_and_loadable_model(pruned_run: Path) -> None:
    record = json.loads((pruned_run / "result.json").read_text())
    assert record["schema"] == 2 and record["method"] == "l1" and record["policy"] == "sp"
    assert record["decay"] == {"steps": 2}  # only the settings that apply to sp
    assert record["epochs"] == {"pretrain": 1, "sparse_learning": 0, "finetune": 2}
    assert record["latency_threads"] == 1 and record["final"]["latency_iqr_ms"] >= 0
    loaded = load_model_files(pruned_run)
    assert loaded.source.name == "pruned.safetensors"
    assert count_cost(loaded.model, loaded.example_input()).macs == record["final"]["macs"]


def test_eval_and_measure_a_pruned_run(capsys: pytest.CaptureFixture[str], pruned_run: Path) -> None:
    record = json.loads((pruned_run / "result.json").read_text())
    code, out, err = run_cli(capsys, ["eval", "--run", str(pruned_run), "--json"])
    assert code == 0, err
    assert json.loads(out)["top1"] == pytest.approx(record["final"]["top1"])
    # The pruned file alone (its .json next to it) works too, with the run's data config.
    code, out, err = run_cli(
        capsys,
        [
            "eval",
            "--weights",
            str(pruned_run / "pruned.safetensors"),
            "--config",
            str(pruned_run / "config.yaml"),
            "--json",
        ],
    )
    assert code == 0, err
    assert json.loads(out)["top1"] == pytest.approx(record["final"]["top1"])
    for source in (["--run", str(pruned_run)], ["--weights", str(pruned_run / "pruned.safetensors")]):
        code, out, err = run_cli(capsys, ["measure", *source, "--repeats", "3", "--warmup", "0", "--json"])
        assert code == 0, err
        measured = json.loads(out)
        assert (measured["macs"], measured["params"]) == (record["final"]["macs"], record["final"]["params"])
        assert measured["input_shape"] == [1, 8, 8] and measured["threads"] == 1
        # The unpruned architecture is rebuilt from the spec: MACs ratio and latency speed-up side by side.
        assert (
            measured["base_macs"] == record["base"]["macs"] and measured["macs_counter"] == "torch_pruning+flop_counter"
        )
        assert measured["macs_ratio"] == pytest.approx(record["base"]["macs"] / record["final"]["macs"])
        (cpu,) = [s for s in measured["speed_up"] if s["device"] == "cpu"]
        assert cpu["q1"] <= cpu["median"] <= cpu["q3"] and cpu["rounds"] == 5 and cpu["threads"] == 1
        assert cpu["median"] > 0 and cpu["base_ms"] > 0 and cpu["pruned_ms"] > 0
    code, out, err = run_cli(capsys, ["measure", "--run", str(pruned_run), "--repeats", "5", "--rounds", "2"])
    assert code == 0, err
    assert "MACs ratio (base / pruned)" in out and "latency speed-up, median [IQR] of 2 rounds" in out


def test_prune_run_folder_safety(capsys: pytest.CaptureFixture[str], pruned_run: Path) -> None:
    out, name = str(pruned_run.parent), pruned_run.name
    code, _, err = run_cli(capsys, ["prune", *PRUNE_TINY, "--output-dir", out, "--name", name])
    assert code == 2 and "already holds files" in err
    changed = ["--set", "prune={method: l1, target_macs_fraction: 0.4, decay: {policy: sp, steps: 2}}"]
    code, _, err = run_cli(capsys, ["prune", *PRUNE_TINY, *changed, "--output-dir", out, "--name", name, "--resume"])
    assert code == 2 and "prune.target_macs_fraction changed" in err
    code, _, err = run_cli(capsys, ["prune", *PRUNE_TINY, "--output-dir", out, "--name", "absent", "--resume"])
    assert code == 2 and "nothing to resume" in err


def test_export_a_pruned_run(capsys: pytest.CaptureFixture[str], pruned_run: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, ["export", "--run", str(pruned_run), "--output", str(tmp_path / "exp")])
    assert code == 0, err
    assert {p.name for p in (tmp_path / "exp").iterdir()} == {"model.safetensors", "model.json", "model.pt2"}
    reference = load_model_files(pruned_run).model
    x = torch.randn(3, 1, 8, 8)
    program = torch.export.load(str(tmp_path / "exp" / "model.pt2")).module()
    torch.testing.assert_close(program(x), reference(x))
    torch.testing.assert_close(program(x[:1]), reference(x[:1]))  # the batch dimension is dynamic
    again = load_model_files(tmp_path / "exp" / "model.safetensors").model
    torch.testing.assert_close(again(x), reference(x))


def test_export_onnx_matches_pytorch(capsys: pytest.CaptureFixture[str], pruned_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    code, _, err = run_cli(capsys, ["export", "--run", str(pruned_run), "-o", str(tmp_path), "--format", "onnx"])
    assert code == 0, err
    x = torch.randn(2, 1, 8, 8)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    (got,) = session.run(None, {"input": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), load_model_files(pruned_run).model(x), rtol=1e-4, atol=1e-5)


def test_export_errors(capsys: pytest.CaptureFixture[str], trained_run: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, ["export", "--run", str(tmp_path), "--output", str(tmp_path / "o")])
    assert code == 2 and "holds no model files" in err
    blocker = tmp_path / "f"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, ["export", "--run", str(trained_run), "--output", str(blocker)])
    assert code == 2 and "is a file, not a folder" in err


def test_prune_resume_without_config_uses_the_saved_one(capsys: pytest.CaptureFixture[str], pruned_run: Path) -> None:
    record = json.loads((pruned_run / "result.json").read_text())
    argv = ["prune", "--resume", "--output-dir", str(pruned_run.parent), "--name", pruned_run.name, "--no-progress"]
    code, _, err = run_cli(capsys, [*argv, "--set", "finetune.device=cpu"])
    assert code == 0, err
    again = json.loads((pruned_run / "result.json").read_text())
    assert again["final"]["top1"] == record["final"]["top1"] and again["epochs"] == record["epochs"]
    code, _, err = run_cli(capsys, [*argv, "--set", "finetune.lr=0.5"])
    assert code == 2 and "finetune.lr changed" in err


def test_train_from_scratch_on_a_pruned_architecture(pruned_run: Path, tmp_path: Path) -> None:
    pruned = pruned_run / "pruned.safetensors"
    argv = ["train", *TINY, "--set", "train.epochs=1", "--set", f"model.scratch_from={pruned}"]
    assert main([*argv, "--output-dir", str(tmp_path), "--name", "scratch", "--no-progress"]) == 0
    trained_spec = json.loads((tmp_path / "scratch" / "model.json").read_text())
    pruned_spec = json.loads((pruned_run / "pruned.json").read_text())
    assert trained_spec["tensors"] == pruned_spec["tensors"]  # the pruned shapes, not the base model's
    trained = load_file(tmp_path / "scratch" / "model.safetensors")
    kept = load_file(pruned)
    assert any(not torch.equal(trained[k], kept[k]) for k in kept if k.endswith("weight"))
    result = json.loads((tmp_path / "scratch" / "result.json").read_text())
    assert result["macs"] < json.loads((pruned_run / "result.json").read_text())["base"]["macs"]


def test_scratch_from_needs_a_pruned_model_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, ["train", *TINY, "--set", f"model.scratch_from={tmp_path / 'nothing.safetensors'}"])
    assert code == 2 and "no pruned-model spec" in err
