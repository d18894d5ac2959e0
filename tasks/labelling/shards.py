"""Label shards: a run's problems split into n deterministic shards (datatrove-style: shard i of n),
each generated and labelled on its own, so that a Ray cluster can run them side by side through
Prefect's Ray task runner (``flows/label.py``, ``--executor ray``).

A shard is resumable alone: its work is keyed by content and claimed through the store's leases
(``tasks/leases.py``), so a shard rerun after its worker died skips every unit already stored, and
two shards never store one unit twice. Each shard runs its own completer: an in-process engine on
the GPU Ray gave it, or an ``openai`` client to the node's ``vllm serve``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.completers import close_completers
from tasks.config import ExecutorSettings, LabelConfig
from tasks.generation import GenerationSummary, run_generation
from tasks.labelling.labeller import LabelSummary, run_labelling

#: Environment a shard's worker needs from the process that started the run (a Ray cluster's
#: workers do not inherit it): the store and models settings, Prefect's API, offline hub flags.
FORWARDED_ENV_PREFIXES = ("PRMF_", "PREFECT_API_", "PREFECT_HOME", "HF_", "TRANSFORMERS_", "VLLM_", "TOKENIZERS_")


def shard_of(problem_id: str, shards: int) -> int:
    """The shard a problem belongs to: a hash of its id, so the partition does not depend on the
    order or number of the problems a run selected."""
    return int(hashlib.sha256(problem_id.encode()).hexdigest()[:12], 16) % shards


def partition(problem_ids: Sequence[str], shards: int) -> list[list[str]]:
    """``problem_ids`` in ``shards`` groups by :func:`shard_of` (input order kept in each)."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    parts: list[list[str]] = [[] for _ in range(shards)]
    for problem_id in problem_ids:
        parts[shard_of(problem_id, shards)].append(problem_id)
    return parts


def shard_count(settings: ExecutorSettings, cluster: dict[str, float]) -> int:
    """``settings.shards``, or from the cluster's resources: ``shards_per_gpu`` per GPU, else one
    shard per 2 CPUs (a CPU engine uses about two)."""
    if settings.shards is not None:
        return settings.shards
    gpus = int(cluster.get("GPU", 0))
    if gpus:
        return gpus * settings.shards_per_gpu
    return max(1, int(cluster.get("CPU", 1)) // 2)


def shard_resources(settings: ExecutorSettings, cluster: dict[str, float]) -> dict[str, Any]:
    """What each shard asks Ray for (``prefect_ray.context.remote_options``): its share of a GPU
    when the cluster has GPUs, its CPUs, and how often Ray reruns it after its worker died."""
    options: dict[str, Any] = {"num_cpus": settings.cpus_per_shard, "max_retries": settings.shard_retries}
    if cluster.get("GPU", 0):
        options["num_gpus"] = 1 / settings.shards_per_gpu
    return options


def forwarded_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables of :data:`FORWARDED_ENV_PREFIXES` set here, for the workers' runtime env."""
    environ = dict(os.environ) if environ is None else environ
    return {k: v for k, v in environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}


@dataclass(frozen=True)
class ShardSummary:
    """What one shard did, and where (the worker that finished it)."""

    shard: int
    shards: int
    problems: int
    generated: GenerationSummary
    labelled: LabelSummary
    host: str
    pid: int


def shard_row(summary: ShardSummary) -> dict[str, Any]:
    """One shard in a run's summary: where it ran and what it stored."""
    return {"shard": summary.shard, "problems": summary.problems, "host": summary.host, "pid": summary.pid,
            "solutions": summary.generated.solutions, "units_labelled": summary.labelled.units_labelled,
            "rollouts": summary.labelled.rollouts}


def label_shard(problem_ids: list[str], config: LabelConfig, run_id: str, shard: int, shards: int) -> ShardSummary:
    """Generate and label one shard's problems, as the local flow does for the whole run. The
    engines are shut down at the end: a long-lived Ray worker must not keep holding its GPU."""
    try:
        generated = run_generation(problem_ids, config, run_id)
        labelled = run_labelling(problem_ids, config, run_id)
    finally:
        close_completers()
    return ShardSummary(shard, shards, len(problem_ids), generated, labelled, socket.gethostname(), os.getpid())


def merge_summaries(shards: Sequence[ShardSummary]) -> tuple[GenerationSummary, LabelSummary]:
    """The run's summaries: every count and second added up over the shards (``rounds``: the most
    any shard needed)."""

    def merged(cls: type, items: list[Any]) -> Any:
        if not items:
            return cls.nothing()
        values = {}
        for f in dataclasses.fields(cls):
            column = [getattr(item, f.name) for item in items]
            values[f.name] = max(column) if f.name == "rounds" else sum(column)
        return cls(**values)

    return merged(GenerationSummary, [s.generated for s in shards]), merged(LabelSummary, [s.labelled for s in shards])


@task(name="label-shard", cache_policy=NO_CACHE, task_run_name="label-shard-{shard}-of-{shards}")
def label_shard_task(problem_ids: list[str], config: LabelConfig, run_id: str, shard: int, shards: int) -> ShardSummary:
    return label_shard(problem_ids, config, run_id, shard, shards)
