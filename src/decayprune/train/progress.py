"""Rich progress bar of the training loop (one bar, reset every epoch, plus a summary line per epoch).

The bar is transient (it disappears when done, leaving the summary lines) and shows no loss until
the first steps have one.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["TrainProgress"]


class TrainProgress:
    """Progress display; every method is a no-op when ``enabled`` is False.

    Works without a terminal (rich then skips live redraws and just prints lines).

    Example:
        >>> view = TrainProgress(enabled=False, total_epochs=3)
        >>> view.start_epoch(0, 10); view.update(5, loss=0.7, top1=80.0, images_per_s=1e3)
        >>> view.end_epoch("epoch 1/3 done"); view.close()
    """

    def __init__(self, *, enabled: bool, total_epochs: int, console: Console | None = None) -> None:
        self.enabled = enabled
        self.total_epochs = total_epochs
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if not enabled:
            return
        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=True,
        )
        self._progress.start()

    def start_epoch(self, epoch: int, total_steps: int | None) -> None:
        """Reset the bar for the 0-based ``epoch`` with ``total_steps`` steps (None: unknown)."""
        if self._progress is None:
            return
        fields: dict[str, Any] = {"epoch": epoch + 1, "epochs": self.total_epochs, "stats": "starting"}
        if self._task is None:
            self._task = self._progress.add_task("train", total=total_steps, **fields)
        else:
            self._progress.reset(self._task, total=total_steps, **fields)

    def update(self, steps_done: int, *, loss: float, top1: float, images_per_s: float) -> None:
        """Show ``steps_done`` steps of the epoch and the running loss, top-1 (%) and throughput."""
        if self._progress is None or self._task is None:
            return
        stats = f"loss {loss:.4f}  acc {top1:5.1f}%  {images_per_s:,.0f} img/s"
        self._progress.update(self._task, completed=steps_done, stats=stats)

    def end_epoch(self, summary: str) -> None:
        """Print one summary line above the bar."""
        if self._progress is not None:
            self._progress.console.print(summary, highlight=False)

    def close(self) -> None:
        """Stop the live display (safe to call twice)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
