"""One rich progress bar for every long-running command (scan, engines, video, eval).

Why: throughput is the number an operator sizes hardware with, so every bar shows it in
the unit of the work (images/s, frames/s), next to count, elapsed and remaining time.
Bars go to stderr so JSON on stdout stays clean.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["Progress", "RateColumn", "progress_bar"]


class RateColumn(ProgressColumn):
    """Items per second in the given unit (``img/s``, ``frames/s``)."""

    def __init__(self, unit: str = "img/s", decimals: int = 1) -> None:
        super().__init__()
        self.unit = unit
        self.decimals = decimals

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        text = f"-- {self.unit}" if speed is None else f"{speed:.{self.decimals}f} {self.unit}"
        return Text(text, style="cyan")


def progress_bar(enabled: bool = True, unit: str = "img/s", decimals: int = 1) -> Progress:
    """A progress bar with rate, count and times, on stderr; a no-op when disabled."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit, decimals),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )
