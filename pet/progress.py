"""Messages and progress bars on stderr, so stdout stays clean for --json output."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Callable, Iterator

from rich.console import Console

console = Console(stderr=True, highlight=False)


class _RichHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        prefix = "[yellow]warning:[/] " if record.levelno >= logging.WARNING else ""
        console.print(prefix + record.getMessage(), markup=True, soft_wrap=True)


def setup_logging(verbose: bool = False) -> None:
    log = logging.getLogger("pet")
    if not any(isinstance(h, _RichHandler) for h in log.handlers):
        log.addHandler(_RichHandler())
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def info(message: str) -> None:
    logging.getLogger("pet").info(message)


@contextlib.contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar with rate and ETA while the work runs; silent when stderr is not a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    disabled = not console.is_terminal or os.environ.get("PET_NO_PROGRESS") == "1"
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, disable=disabled, transient=False,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
