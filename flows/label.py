"""The label flow: select problems -> generate -> label -> record -> settle -> signal growth.

Run it with ``prmf label`` (progress bar and summary table) or as a Prefect deployment. Every
step is idempotent, so rerunning the same flow resumes where a previous run stopped. With
``dataset.select = "next"`` the run takes the next problems not yet labelled (a data cursor) and
says so plainly when the source is exhausted. The last step emits the ``prmf.label.completed``
event that the retrain trigger listens to (``tasks/growth.py``). With ``executor.kind = "ray"``
generate and label run as shards on a Ray cluster (the ``label-shards`` subflow on Prefect's Ray
task runner), each shard a task run with its own completer.
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
from tasks.runs import recorded_run, settle_task, summarize_run_task
from tasks.labelling import LabelSummary, label_task
from tasks.labelling.shards import (ShardSummary, label_shard_task, merge_summaries, partition, shard_count,
                                    shard_resources, shard_row)
from tasks.ray_cluster import ray_cluster_resources, ray_task_runner, remote_options


def _run_name() -> str:
    config = runtime.flow_run.parameters.get("config") or {}
    if isinstance(config, LabelConfig):
        config = config.model_dump()
    dataset = config.get("dataset") or {}
    name = "-".join(part for part in (dataset.get("dataset_name") or dataset.get("name", "arith"), dataset.get("split")) if part)
    cursor = "-next" if dataset.get("select") == "next" else ""
    return f"label-{name}{cursor}-m{config.get('solutions', 4)}-n{config.get('rollouts', 8)}"


@flow(name="label-shards", flow_run_name="label-shards-{run_id}", log_prints=True)
def label_shards(problem_ids: list[str], config: LabelConfig, run_id: str) -> list[ShardSummary]:
    """The problems as shards on the Ray cluster this flow's task runner is connected to."""
    cluster = ray_cluster_resources()
    shards = shard_count(config.executor, cluster)
    parts = partition(problem_ids, shards)
    print(f"{len(problem_ids)} problems in {shards} shards {[len(p) for p in parts]} on a Ray cluster with "
          f"{cluster.get('CPU', 0):g} CPUs and {cluster.get('GPU', 0):g} GPUs")
    with remote_options(**shard_resources(config.executor, cluster)):
        futures = [label_shard_task.submit(part, config, run_id, i, shards) for i, part in enumerate(parts) if part]
    return [future.result() for future in futures]


def label_on_ray(problem_ids: list[str], config: LabelConfig, run_id: str) -> list[ShardSummary]:
    return label_shards.with_options(task_runner=ray_task_runner(config.executor))(problem_ids, config, run_id)


@flow(name="label", flow_run_name=_run_name, log_prints=True)
def label(config: LabelConfig = LabelConfig()) -> dict[str, Any]:
    """Sample solutions for a dataset slice and label every step prefix Math-Shepherd style."""
    started = time.perf_counter()
    db = str(config.db)
    for model in {config.generator.model, config.completer_settings.model}:
        prepare_model(model)  # converts the embedded model on first use; fails fast on a bad path
    with recorded_run(db, "label", config) as run_id:
        selected = select_problems_task(config, run_id)
        shards: list[ShardSummary] = []
        if selected.problem_ids and config.executor.kind == "ray":
            shards = label_on_ray(selected.problem_ids, config, run_id)
            generated, labelled = merge_summaries(shards)
        elif selected.problem_ids:
            generated = generate_task(selected.problem_ids, config, run_id)
            labelled = label_task(selected.problem_ids, config, run_id)
        else:  # an exhausted cursor: nothing to label, and no engine to start for it
            generated, labelled = GenerationSummary.nothing(), LabelSummary.nothing()
    if selected.exhausted:
        print(selected.describe_exhaustion())
        publish_exhaustion_task(selected)
    settle_task(db)  # before the queries below, which then read the run's problems settled
    publish_label_stats_task(db)
    growth = signal_growth_task(db, run_id, selected, config.retrain_threshold_steps)
    print(growth.describe())  # the run's log in the UI
    summary = summarize_run_task(config, run_id, selected, generated, labelled, time.perf_counter() - started)
    return {**summary, "growth": growth, **({"shards": [shard_row(s) for s in shards]} if shards else {})}
