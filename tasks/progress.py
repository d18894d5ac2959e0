"""Progress reporting for long tasks, independent of where they run.

Tasks call ``with progress("rollouts", total) as advance: ... advance(k)``. The CLI installs a
rich progress bar; without one (flows run by a Prefect worker, tests) progress goes to the
log every ~10%, so long runs are never silent. Inside a Prefect run the same progress also
advances a Prefect progress artifact (every 5%), so the UI shows how far a long run is.
"""

from __future__ import annotations

import logging
import re
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


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key from ``parts``: lowercase letters, digits and dashes only."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())).strip("-")[:100]


class PrefectProgress:
    """A Prefect progress artifact for one piece of work, updated at most every 5%.

    The UI is a view, not the work: an API error is logged once and the artifact given up.
    """

    def __init__(self, description: str, total: int) -> None:
        from prefect.artifacts import create_progress_artifact

        self.total, self.done, self.shown = max(total, 1), 0, 0.0
        self.artifact_id = create_progress_artifact(0.0, key=artifact_key("progress", description),
                                                    description=description)

    def advance(self, amount: int) -> None:
        from prefect.artifacts import update_progress_artifact

        self.done += amount
        percent = min(100.0, 100.0 * self.done / self.total)
        if percent - self.shown >= 5 or (percent == 100.0 and self.shown < 100.0):
            update_progress_artifact(self.artifact_id, percent)
            self.shown = percent


    def complete(self) -> None:
        from prefect.artifacts import update_progress_artifact

        if self.shown < 100.0:
            update_progress_artifact(self.artifact_id, 100.0)
            self.shown = 100.0


def _prefect_progress(description: str, total: int) -> PrefectProgress | None:
    from prefect.context import FlowRunContext, TaskRunContext

    if TaskRunContext.get() is None and FlowRunContext.get() is None:
        return None
    try:
        return PrefectProgress(description, total)
    except Exception as exc:  # noqa: BLE001 -- progress display must never fail the work
        log.warning("no Prefect progress artifact for %s: %s", description, exc)
        return None


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    reporter = _reporter
    handle = reporter.start(description, total)
    artifact = _prefect_progress(description, total)

    def advance(amount: int = 1) -> None:
        nonlocal artifact
        reporter.advance(handle, amount)
        if artifact is not None:
            try:
                artifact.advance(amount)
            except Exception as exc:  # noqa: BLE001
                log.warning("progress artifact for %s stopped updating: %s", description, exc)
                artifact = None

    try:
        yield advance
        if artifact is not None:  # finished: 100% even when nothing was left to do
            try:
                artifact.complete()
            except Exception as exc:  # noqa: BLE001
                log.warning("progress artifact for %s stopped updating: %s", description, exc)
    finally:
        reporter.finish(handle)
