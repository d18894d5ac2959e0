"""Data growth and the retrain trigger.

Growth is the number of labelled steps (fully labelled solutions outside test splits, view
``labelled_steps``) that arrived since the promoted PRM's data snapshot. After every label run the
factory records the growth and emits a Prefect event, ``prmf.label.completed``, carrying the
dataset, the steps that run newly labelled and the growth. Retraining is *due* when the growth
reaches the threshold, and not again for the same promoted model until another threshold of
steps arrived: the run that crosses it claims a ``retrain_triggers`` row (under the store's write
lock), so a crossing starts exactly one retrain even while later label runs finish before that
retrain has promoted anything. On a server the ``retrain-on-growth`` trigger of the ``retrain``
deployment (``infra/prefect.yaml``) reacts to events marked due and starts ``retrain`` with the
event's ``retrain_config``: the configuration of the factory run that started the label run (else
of the newest factory run on the store, else the defaults), so a triggered retrain trains and
evaluates exactly as the factory was configured to. ``prmf factory`` retrains in its own run.
The event also says when a data cursor found its source exhausted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from pydantic import ValidationError

from tasks.config import FactoryConfig
from tasks.ingest import IngestSummary
from tasks.registry import label_snapshot, promoted_model
from tasks.store import Store, internal_sql

#: The event every label run emits; ``prmf.retrain-due`` on its resource says whether it triggered.
LABEL_EVENT = "prmf.label.completed"


@dataclass(frozen=True)
class Growth:
    """Labelled steps now vs. in the promoted PRM's snapshot (0 when nothing is promoted yet).

    ``due``: retrain, because the new steps reached the threshold (``>=``: exactly at it counts)
    and, when a retrain was already triggered for this baseline at ``last_trigger_steps``, another
    threshold of steps arrived since.
    """

    labelled_steps: int
    baseline_steps: int
    baseline_model: str | None
    threshold: int
    last_trigger_steps: int | None = None
    new_steps: int = field(init=False)
    due: bool = field(init=False)

    def __post_init__(self) -> None:
        new_steps = self.labelled_steps - self.baseline_steps
        since_trigger = new_steps if self.last_trigger_steps is None else self.labelled_steps - self.last_trigger_steps
        object.__setattr__(self, "new_steps", new_steps)
        object.__setattr__(self, "due", new_steps >= self.threshold and since_trigger >= self.threshold)


def growth(store: Store, threshold: int) -> Growth:
    """How many labelled steps arrived since the promoted PRM was trained, and whether that is
    enough to retrain."""
    now = int(label_snapshot(store)["labelled_steps"])
    promoted = promoted_model(store, "prm")
    baseline_model, baseline_steps = None, 0
    if promoted is not None:
        snapshot = json.loads(promoted["data_snapshot"])
        baseline_model, baseline_steps = promoted["model_id"], int(snapshot.get("labelled_steps", snapshot.get("steps", 0)))
    last = store.scalar(internal_sql("last_retrain_trigger"), {"baseline_model": baseline_model})
    return Growth(now, baseline_steps, baseline_model, threshold, None if last is None else int(last))


def claim_retrain(store: Store, threshold: int, run_id: str, dataset: str) -> Growth:
    """The growth after run ``run_id``; when it is due, the run claims the trigger (a
    ``retrain_triggers`` row), so the next run sees it as taken. Atomic under the write lock (on a
    lake: of two runs claiming at once, one commits and the other, retried, finds it taken)."""
    def claim() -> Growth:
        with store.transaction() as con:
            current = growth(store, threshold)
            if current.due:
                store.insert_rows("retrain_triggers", [{
                    "run_id": run_id, "dataset": dataset, "baseline_model": current.baseline_model,
                    "labelled_steps": current.labelled_steps, "new_steps": current.new_steps, "threshold": threshold,
                }], con=con)
        return current

    return store.retrying(claim)


def run_labelled_steps(store: Store, run_id: str) -> int:
    """Labelled steps (outside test splits) of the solutions run ``run_id`` completed."""
    return int(store.scalar(internal_sql("run_labelled_steps"), {"run_id": run_id}))


def retrain_config(store: Store, run_id: str) -> tuple[dict[str, Any], str]:
    """The configuration a retrain triggered by label run ``run_id`` must use, and where it came
    from: the factory run that started it, else the newest factory run on this store, else the
    defaults. Its store is this store (an absolute path: the worker's directory may differ)."""
    db = store.absolute_location
    rows = store.query(internal_sql("retrain_config"), {"run_id": run_id}).rows
    if not rows:
        return FactoryConfig(db=db).public_dump(), "defaults (no factory run on this store)"
    factory_run, stored = rows[0]
    data = json.loads(stored)
    for stage in ("label", "train", "eval"):
        data.get(stage, {}).pop("db", None)
    try:
        return FactoryConfig.model_validate({**data, "db": db}).public_dump(), f"factory run {factory_run}"
    except ValidationError as exc:  # written by an older version: say so rather than fail the label run
        reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        return FactoryConfig(db=db).public_dump(), f"defaults (factory run {factory_run}'s config is invalid: {reason})"


@dataclass(frozen=True)
class GrowthSignal:
    """What a label run reports after it finished: its own contribution, the store's growth, whether
    its data cursor found the source exhausted, and the configuration a triggered retrain uses."""

    dataset: str
    split: str | None
    run_labelled_steps: int
    growth: Growth
    db: str
    exhausted: bool = False
    exhaustion: str | None = None
    retrain_config: dict[str, Any] = field(default_factory=dict)
    retrain_config_source: str = ""

    def event_payload(self) -> dict[str, Any]:
        g = self.growth
        return {"dataset": self.dataset, "split": self.split, "new_labelled_steps": self.run_labelled_steps,
                "labelled_steps": g.labelled_steps, "growth_steps": g.new_steps, "threshold": g.threshold,
                "baseline_model": g.baseline_model, "retrain_due": g.due, "db": self.db,
                "exhausted": self.exhausted, "exhaustion": self.exhaustion,
                "retrain_config": self.retrain_config, "retrain_config_source": self.retrain_config_source}

    def describe(self) -> str:
        g = self.growth
        since = g.baseline_model or "the start (no promoted PRM)"
        if g.due:
            verdict = "retraining is due"
        elif g.new_steps >= g.threshold:
            verdict = f"a retrain was already triggered at {g.last_trigger_steps} labelled steps"
        else:
            verdict = f"{g.threshold - g.new_steps} more to go"
        added = ("test split, not counted" if self.split == "test"
                 else f"{self.run_labelled_steps} labelled steps added by this run")
        line = (f"{self.dataset}/{self.split}: {added}; {g.new_steps} labelled steps since {since}, threshold "
                f"{g.threshold}: {verdict}")
        return f"{line}. {self.exhaustion}" if self.exhaustion else line


def signal_growth(store: Store, run_id: str, selected: IngestSummary, threshold: int) -> GrowthSignal:
    """Measure a finished label run's growth, claim the retrain trigger when due, emit the event."""
    config, source = retrain_config(store, run_id)
    signal = GrowthSignal(selected.dataset, selected.split, run_labelled_steps(store, run_id),
                          claim_retrain(store, threshold, run_id, selected.dataset), store.absolute_location,
                          selected.exhausted, selected.describe_exhaustion() if selected.exhausted else None,
                          config, source)
    # Matched by the retrain deployment's trigger on these resource labels (infra/prefect.yaml).
    emit_event(
        event=LABEL_EVENT,
        resource={"prefect.resource.id": f"prmf.dataset.{signal.dataset}", "prefect.resource.name": signal.dataset,
                  "prmf.retrain-due": str(signal.growth.due).lower()},
        related=[{"prefect.resource.id": f"prmf.store.{signal.db}", "prefect.resource.role": "store",
                  "prefect.resource.name": Path(signal.db).name}],
        payload=signal.event_payload(),
    )
    return signal


@task(name="signal-growth", cache_policy=NO_CACHE, task_run_name="growth-after-{selected.dataset}")
def signal_growth_task(db: str, run_id: str, selected: IngestSummary, threshold: int) -> GrowthSignal:
    with Store(db, read_only=False) as store:
        return signal_growth(store, run_id, selected, threshold)
