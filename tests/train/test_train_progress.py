"""The progress bar shows no made-up loss before the first steps and leaves only summary lines."""

from __future__ import annotations

import io

from rich.console import Console

from decayprune.train.progress import TrainProgress


def test_bar_starts_without_a_loss_and_is_transient() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    view = TrainProgress(enabled=True, total_epochs=2, console=console)
    view.start_epoch(0, 10)
    view._progress.refresh()  # type: ignore[union-attr]
    first = buffer.getvalue()
    assert "starting" in first and "nan" not in first
    view.update(5, loss=0.5, top1=80.0, images_per_s=1000.0)
    view._progress.refresh()  # type: ignore[union-attr]
    assert "loss 0.5000" in buffer.getvalue()
    view.end_epoch("epoch 1/2 done")
    view.close()
    assert "epoch 1/2 done" in buffer.getvalue()
