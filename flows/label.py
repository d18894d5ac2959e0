"""The label flow: ingest -> generate -> label -> record -> signal growth.

Run it with ``prmf label`` (progress bar and summary table) or as a Prefect deployment. Every
step is idempotent, so rerunning the same flow resumes where a previous run stopped. The last
step emits the ``prmf.label.completed`` event that the retrain trigger listens to
(``tasks/growth.py``).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, runtime

from tasks.artifacts import publish_label_stats_task
from tasks.config import LabelConfig
from tasks.generation import generate_task
from tasks.growth import signal_growth_task
from tasks.ingest import ingest_task
from tasks.models import prepare_model
from tasks.runs import finish_run_task, start_run_task, summarize_run_task
from tasks.shepherd import label_task


def _run_name() -> str:
    config = runtime.flow_run.parameters.get("config") or {}
    if isinstance(config, LabelConfig):
        config = config.model_dump()
    dataset = config.get("dataset") or {}
    name = "-".join(part for part in (dataset.get("dataset_name") or dataset.get("name", "arith"), dataset.get("split")) if part)
    return f"label-{name}-m{config.get('solutions', 4)}-n{config.get('rollouts', 8)}"


@flow(name="label", flow_run_name=_run_name, log_prints=True)
def label(config: LabelConfig = LabelConfig()) -> dict[str, Any]:
    """Sample solutions for a dataset slice and label every step prefix Math-Shepherd style."""
    started = time.perf_counter()
    run_id, db = str(runtime.flow_run.id), str(config.db)
    for model in {config.generator.model, config.completer_settings.model}:
        prepare_model(model)  # converts the embedded model on first use; fails fast on a bad path
    start_run_task(config, run_id, "label", runtime.flow_run.name)
    try:
        ingested = ingest_task(db, config.dataset, run_id)
        generated = generate_task(ingested.problem_ids, config, run_id)
        labelled = label_task(ingested.problem_ids, config, run_id)
    except BaseException as exc:
        finish_run_task(db, run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finish_run_task(db, run_id, "completed")
    publish_label_stats_task(db)
    growth = signal_growth_task(db, run_id, ingested.dataset, ingested.split, config.retrain_threshold_steps)
    print(growth.describe())  # the run's log in the UI
    summary = summarize_run_task(config, run_id, ingested, generated, labelled, time.perf_counter() - started)
    return {**summary, "growth": growth}
