"""The import flow: a public step-labelled dataset into the store (``prmf import``).

Problems, solutions and steps are stored as the factory stores its own, the step labels apart in
``imported_step_labels`` with the import (``imports``) that brought them; bad records go to
``quarantine``. Importing the same file into the same dataset split again stores nothing. The
labels train reward models with ``prmf train --labels imported`` (or ``both``); they never count
as the factory's growth. See tasks/interchange/imports.py.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, runtime

from tasks.config import ImportConfig
from tasks.interchange.imports import import_task
from tasks.runs import recorded_run, settle_task


def _run_name() -> str:
    config = runtime.flow_run.parameters.get("config") or {}
    if isinstance(config, ImportConfig):
        config = config.model_dump()
    return f"import-{config.get('format', 'math-shepherd')}-{config.get('split', 'train')}"


@flow(name="import", flow_run_name=_run_name, log_prints=True)
def import_labels(config: ImportConfig = ImportConfig()) -> dict[str, Any]:
    """Import ``config.path`` (``config.format``) into ``config.db``."""
    with recorded_run(config.db, "import", config) as run_id:
        summary = import_task(config, run_id)
    settle_task(str(config.db))
    if summary.already_imported:
        print(f"{summary.source}: already imported as {summary.import_id} into {summary.dataset}/{summary.split}; "
              "nothing stored")
    else:
        print(f"{summary.source}: {summary.read} records read, {summary.imported} solutions imported, "
              f"{summary.quarantined} quarantined")
    return {"run_id": run_id, **asdict(summary)}
