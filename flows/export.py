"""The export flow: the store's step labels as a dataset PRM trainers read, with its card.

Run it with ``prmf export`` or as a Prefect deployment. The selection and the format are an
``ExportConfig``; the run is recorded in ``runs`` and named in the dataset card.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow

from tasks.config import ExportConfig
from tasks.interchange import export_task, push_to_hub_task
from tasks.runs import recorded_run


@flow(name="export", flow_run_name="export-{config.format}", log_prints=True)
def export(config: ExportConfig = ExportConfig(), command: str = "prmf export") -> dict[str, Any]:
    """Select labelled solutions, stream them into shards of the format, write the card (and push)."""
    with recorded_run(config.db, "export", config) as run_id:
        summary = export_task(config, command, run_id)
        if config.push_to_hub:
            push_to_hub_task(config.out, config.push_to_hub)
    return {"run_id": run_id, **asdict(summary)}
