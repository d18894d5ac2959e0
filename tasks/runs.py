"""Run lineage: every flow run is a ``runs`` row linking the store to the Prefect flow run."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from prefect import runtime, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from tasks.config import LabelConfig
from tasks.models import resolve_model
from tasks.store import Settled, Store, StoreError, internal_sql, to_json

REPO = Path(__file__).resolve().parent.parent


def code_version() -> str:
    """Package version plus the git commit (and -dirty) when running from a checkout."""
    try:
        version = metadata.version("prm-factory")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=REPO, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"{version}+{commit}"
    except (OSError, subprocess.SubprocessError):
        return version


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def mark_crashed_runs(store: Store) -> list[str]:
    """Runs still 'running' whose process on this host is gone were killed: say so."""
    host = socket.gethostname()
    rows = store.query(internal_sql("running_runs_on_host"), {"host": host}).rows
    crashed = [run_id for run_id, pid in rows if pid is None or not process_alive(pid)]
    for run_id in crashed:
        store.finish_run(run_id, "crashed", f"process on {host} ended without finishing the run")
    return crashed


def start_run(store: Store, run_id: str, flow_name: str, flow_run_name: str | None, config: BaseModel,
              parent_run_id: str | None = None) -> None:
    """Record a flow run of any kind: its configuration (credentials redacted), code version and
    process; label runs also fill the model and sampling columns."""
    mark_crashed_runs(store)
    row: dict[str, Any] = {
        "run_id": run_id, "flow_name": flow_name, "flow_run_name": flow_run_name, "parent_run_id": parent_run_id,
        "config": to_json(config.public_dump()), "code_version": code_version(), "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    if isinstance(config, LabelConfig):
        completer = config.completer_settings
        row |= {
            "dataset": config.dataset.name, "split": config.dataset.split,
            "generator_model": resolve_model(config.generator.model).identity,
            "completer_model": resolve_model(completer.model).identity, "backend": completer.backend,
            "generation_params": config.generation.key(), "rollout_params": config.rollout.key(),
            "label_strategy": config.strategy,
        }
    store.start_run(row)


@task(name="start-run", cache_policy=NO_CACHE, task_run_name="record-run-{flow_name}")
def start_run_task(db: str, run_id: str, flow_name: str, flow_run_name: str | None, config: BaseModel,
                   parent_run_id: str | None = None) -> None:
    with Store(db) as store:
        start_run(store, run_id, flow_name, flow_run_name, config, parent_run_id)


@task(name="finish-run", cache_policy=NO_CACHE, task_run_name="finish-run-{status}")
def finish_run_task(db: str, run_id: str, status: str, error: str | None = None) -> None:
    from tasks.leases import release

    def finish() -> None:
        with store.transaction():
            store.finish_run(run_id, status, error)
            release(store, run_id)  # a run that ended holds no work

    with Store(db) as store:
        store.retrying(finish)  # on a lake, another writer may update runs at the same moment


@task(name="settle-estimates", cache_policy=NO_CACHE)
def settle_task(db: str) -> Settled | None:
    """Store the estimates of the problems that ended runs wrote (:meth:`Store.settle`), so that
    queries read them precomputed. A settle that fails leaves them computed from the units, which
    is correct, only slower: the flow says so and does not fail."""
    try:
        with Store(db) as store:
            settled = store.settle()
    except StoreError as exc:
        print(f"settling the estimates failed ({exc}); queries compute them from the units until "
              f"`prmf settle` runs")
        return None
    if settled.runs:
        print(f"settled {settled.problems} problems' estimates in {settled.seconds:.1f} s")
    return settled


@contextmanager
def recorded_run(db: str | Path, flow_name: str, config: BaseModel) -> Iterator[str]:
    """The current Prefect flow run as a ``runs`` row (lineage): recorded as running when the block
    starts, completed or failed (with the error) when it ends. Yields the run id, which the rows
    the run writes (models, pools, results, decisions) carry."""
    run_id = str(runtime.flow_run.id)
    parent = runtime.flow_run.parent_flow_run_id
    start_run_task(str(db), run_id, flow_name, runtime.flow_run.name, config, str(parent) if parent else None)
    try:
        yield run_id
    except BaseException as exc:
        finish_run_task(str(db), run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finish_run_task(str(db), run_id, "completed")


def summarize_run(
    store: Store, config: LabelConfig, run_id: str, ingested: Any, generated: Any, labelled: Any, wall_seconds: float
) -> dict[str, Any]:
    """The numbers a user wants after a run: volume, accuracy, cost, agreement with gold."""
    summary = store.run_summary(run_id, ingested.problem_ids, resolve_model(config.generator.model).identity)
    engine_seconds = generated.engine_seconds + labelled.engine_seconds
    tokens = generated.tokens + labelled.tokens
    return {
        "run_id": run_id,
        "dataset": ingested.dataset,
        "split": ingested.split,
        **summary,
        "quarantined": ingested.quarantined,
        "select": ingested.select,
        "already_labelled": ingested.already_labelled if ingested.select == "next" else None,
        "exhausted": ingested.exhausted,
        "new_solutions": generated.solutions,
        "prefixes_labelled_now": labelled.units_labelled,
        "prefixes_already_stored": labelled.units_done_before,
        "prefixes_by_other_runs": labelled.units_by_other_runs,
        "prefixes_recomputed": labelled.units_recomputed,
        "strategy": config.strategy,
        "label_rounds": labelled.rounds,
        "inferred_steps_now": labelled.inferred_steps,
        "contradictions_now": labelled.contradictions,
        "reused_rollouts_now": labelled.reused_rollouts,
        "tokens_per_s": tokens / engine_seconds if engine_seconds else None,
        "wall_seconds": wall_seconds,
        "db": str(config.db),
    }


@task(name="summarize-run", cache_policy=NO_CACHE, task_run_name="summarize-{config.dataset.name}")
def summarize_run_task(
    config: LabelConfig, run_id: str, ingested: Any, generated: Any, labelled: Any, wall_seconds: float
) -> dict[str, Any]:
    with Store(config.db, read_only=False) as store:
        return summarize_run(store, config, run_id, ingested, generated, labelled, wall_seconds)
