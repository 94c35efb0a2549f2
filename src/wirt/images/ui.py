"""Messages and progress bars for the image layer, always on stderr (stdout is for results)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

_warned: set[str] = set()


@functools.cache
def console() -> Console:
    """The stderr console, made on first use: rich costs 25 ms to import, and a `wirt run` whose
    guest files are all cached prints nothing through it."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def info(message: str) -> None:
    """One progress message (`wirt: ...`) on stderr."""
    console().print(f"wirt: {message}", markup=False, soft_wrap=True)


def warn_once(key: str, message: str) -> None:
    """A warning shown once per process for a given key (e.g. "no keyring")."""
    if key in _warned:
        return
    _warned.add(key)
    console().print(f"wirt: warning: {message}", markup=False, style="yellow", soft_wrap=True)


def byte_progress() -> Progress:
    """A progress display for byte counts: bar, bytes done/total, bytes per second, time left."""
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)
    from rich.table import Column

    return Progress(
        TextColumn("{task.description}", table_column=Column(max_width=36, no_wrap=True, overflow="ellipsis")),
        BarColumn(bar_width=24),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console(),
        transient=False,
    )
