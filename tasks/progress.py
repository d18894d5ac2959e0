"""Progress reporting for long tasks, independent of where they run.

Tasks call ``with progress("rollouts", total) as advance: ... advance(k)``. The CLI installs a
rich progress bar; without one (flows run by a Prefect worker, tests) progress goes to the
log every ~10%, so long runs are never silent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

log = logging.getLogger("prmf.progress")


class Reporter(Protocol):
    def start(self, description: str, total: int) -> object: ...

    def advance(self, handle: object, amount: int) -> None: ...

    def finish(self, handle: object) -> None: ...


class LogReporter:
    """Logs every tenth of the way; the default where no terminal is watching."""

    def start(self, description: str, total: int) -> object:
        log.info("%s: 0/%d", description, total)
        return {"description": description, "total": total, "done": 0, "next": max(1, total // 10)}

    def advance(self, handle: object, amount: int) -> None:
        state = handle  # type: ignore[assignment]
        state["done"] += amount
        if state["done"] >= state["next"] or state["done"] == state["total"]:
            log.info("%s: %d/%d", state["description"], state["done"], state["total"])
            state["next"] = state["done"] + max(1, state["total"] // 10)

    def finish(self, handle: object) -> None:
        pass


class RichReporter:
    """A rich progress bar on stderr (used by the CLI)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, description: str, total: int) -> object:
        return self.progress.add_task(description, total=total)

    def advance(self, handle: object, amount: int) -> None:
        self.progress.advance(handle, amount)  # type: ignore[arg-type]

    def finish(self, handle: object) -> None:
        self.progress.refresh()


_reporter: Reporter = LogReporter()
_lock = threading.Lock()


def set_reporter(reporter: Reporter | None) -> None:
    global _reporter
    with _lock:
        _reporter = reporter or LogReporter()


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    reporter = _reporter
    handle = reporter.start(description, total)
    try:
        yield lambda amount=1: reporter.advance(handle, amount)
    finally:
        reporter.finish(handle)
