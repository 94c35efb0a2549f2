"""Messages and progress bars for the image layer, always on stderr (stdout is for results)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Column
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

console = Console(stderr=True, highlight=False)
_warned: set[str] = set()


def info(message: str) -> None:
    """One progress message (`wirt: ...`) on stderr."""
    console.print(f"wirt: {message}", markup=False, soft_wrap=True)


def warn_once(key: str, message: str) -> None:
    """A warning shown once per process for a given key (e.g. "no keyring")."""
    if key in _warned:
        return
    _warned.add(key)
    console.print(f"wirt: warning: {message}", markup=False, style="yellow", soft_wrap=True)


def byte_progress() -> Progress:
    """A progress display for byte counts: bar, bytes done/total, bytes per second, time left."""
    return Progress(
        TextColumn("{task.description}", table_column=Column(max_width=36, no_wrap=True, overflow="ellipsis")),
        BarColumn(bar_width=24),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
