"""State and helpers shared by the subcommand modules."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@dataclass
class CliState:
    verbose: bool = False
    quiet: bool = False


state = CliState()
console = Console()
err_console = Console(stderr=True)


def progress_enabled() -> bool:
    """Progress bars are shown on a terminal unless ``--quiet`` was given."""
    return not state.quiet and err_console.is_terminal


def new_progress(*extra: ProgressColumn) -> Progress:
    """The house progress bar: description, bar, done/total, ``extra`` columns, elapsed, ETA."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar driven by a ``(done, total)`` callback; silent with ``--quiet``."""
    if not progress_enabled():
        yield lambda done, total: None
        return
    with new_progress() as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update
