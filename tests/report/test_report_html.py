"""The HTML report: self-contained (images inline, no external assets), parses, opens in headless Chromium."""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from decayprune.cli import main
from decayprune.errors import UserError
from decayprune.report import PNG_MAGIC, build_report


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _parse(text: str) -> _Collect:
    parser = _Collect()
    parser.feed(text)
    parser.close()
    return parser


def _check_self_contained(page: str, min_images: int) -> None:
    tags = _parse(page).tags
    images = [attrs for tag, attrs in tags if tag == "img"]
    assert len(images) >= min_images
    for attrs in images:
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    assert not [t for t, a in tags if t in ("script", "link", "iframe")]
    assert not [a for _, a in tags if any((v or "").startswith(("http:", "https:", "//")) for v in a.values())]


def test_bench_report_is_self_contained(small_bench):
    written = build_report(small_bench.bench_dir)
    names = {p.name for p in written}
    assert names == {"table.md", "table.csv", "accuracy_vs_macs.png", "report.html"}
    page = (small_bench.bench_dir / "report" / "report.html").read_text()
    _check_self_contained(page, min_images=1 + 4 * 2)  # accuracy plot + curves and channels per cell
    assert page.count("<details>") == 4 and "small_cnn-synthetic-l1-sp-sr-s1" in page


def test_run_report_via_cli(small_bench, capsys):
    run_dir = small_bench.bench_dir / "small_cnn-synthetic-l1-sp-sr-s0"
    assert main(["report", str(run_dir)]) == 0
    assert "report.html" in capsys.readouterr().out
    page = (run_dir / "report" / "report.html").read_text()
    _check_self_contained(page, min_images=2)
    assert "l1 + sp+sr" in page and (run_dir / "report" / "curves.png").is_file()


def test_report_of_a_folder_that_is_no_run(tmp_path, capsys):
    with pytest.raises(UserError, match="neither a run folder"):
        build_report(tmp_path)
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (Debian package 'chromium')")
def test_report_opens_in_headless_chromium(small_bench, tmp_path):
    page = small_bench.bench_dir / "report" / "report.html"
    build_report(small_bench.bench_dir)
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            str(_chromium()),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert shot.read_bytes()[:8] == PNG_MAGIC
    console_errors = [line for line in proc.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line.upper()]
    assert console_errors == []


def test_a_prune_run_writes_its_own_report(tmp_path, capsys):
    args = [
        "prune",
        "--set",
        "data={name: synthetic, train_subset: 64, test_subset: 32}",
        "--set",
        "finetune={epochs: 2, batch_size: 32, device: cpu}",
        "--set",
        "prune={method: l1, target_macs_fraction: 0.5, iterative_steps: 1, decay: {policy: sp, steps: 1}}",
        "--output-dir",
        str(tmp_path),
        "--name",
        "run",
        "--no-progress",
    ]
    assert main(args) == 0
    assert "report:" in capsys.readouterr().out
    page = (tmp_path / "run" / "report" / "report.html").read_text()
    _check_self_contained(page, min_images=1)  # curves; no base model file (untrained start): no channels chart
    assert main([*args[:-5], "--output-dir", str(tmp_path), "--name", "quiet", "--no-report", "--no-progress"]) == 0
    assert not (tmp_path / "quiet" / "report").exists()
