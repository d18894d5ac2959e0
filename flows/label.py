"""The label flow: select problems -> generate -> label -> record -> signal growth.

Run it with ``prmf label`` (progress bar and summary table) or as a Prefect deployment. Every
step is idempotent, so rerunning the same flow resumes where a previous run stopped. With
``dataset.select = "next"`` the run takes the next problems not yet labelled (a data cursor) and
says so plainly when the source is exhausted. The last step emits the ``prmf.label.completed``
event that the retrain trigger listens to (``tasks/growth.py``).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, runtime

from tasks.artifacts import publish_exhaustion_task, publish_label_stats_task
from tasks.config import LabelConfig
from tasks.generation import GenerationSummary, generate_task
from tasks.growth import signal_growth_task
from tasks.ingest import select_problems_task
from tasks.models import prepare_model
from tasks.runs import recorded_run, summarize_run_task
from tasks.labelling import LabelSummary, label_task


def _run_name() -> str:
    config = runtime.flow_run.parameters.get("config") or {}
    if isinstance(config, LabelConfig):
        config = config.model_dump()
    dataset = config.get("dataset") or {}
    name = "-".join(part for part in (dataset.get("dataset_name") or dataset.get("name", "arith"), dataset.get("split")) if part)
    cursor = "-next" if dataset.get("select") == "next" else ""
    return f"label-{name}{cursor}-m{config.get('solutions', 4)}-n{config.get('rollouts', 8)}"


@flow(name="label", flow_run_name=_run_name, log_prints=True)
def label(config: LabelConfig = LabelConfig()) -> dict[str, Any]:
    """Sample solutions for a dataset slice and label every step prefix Math-Shepherd style."""
    started = time.perf_counter()
    db = str(config.db)
    for model in {config.generator.model, config.completer_settings.model}:
        prepare_model(model)  # converts the embedded model on first use; fails fast on a bad path
    with recorded_run(db, "label", config) as run_id:
        selected = select_problems_task(config, run_id)
        if selected.problem_ids:
            generated = generate_task(selected.problem_ids, config, run_id)
            labelled = label_task(selected.problem_ids, config, run_id)
        else:  # an exhausted cursor: nothing to label, and no engine to start for it
            generated, labelled = GenerationSummary.nothing(), LabelSummary.nothing()
    if selected.exhausted:
        print(selected.describe_exhaustion())
        publish_exhaustion_task(selected)
    publish_label_stats_task(db)
    growth = signal_growth_task(db, run_id, selected, config.retrain_threshold_steps)
    print(growth.describe())  # the run's log in the UI
    summary = summarize_run_task(config, run_id, selected, generated, labelled, time.perf_counter() - started)
    return {**summary, "growth": growth}
