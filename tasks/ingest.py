"""Ingest: load a dataset source into ``problems``; bad rows go to ``quarantine``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import DatasetSettings
from tasks.datasets import load_dataset_spec
from tasks.store import Store, to_json


@dataclass(frozen=True)
class IngestSummary:
    dataset: str
    split: str
    loaded: int
    new: int
    quarantined: int
    problem_ids: list[str]


def load_source(settings: DatasetSettings):
    """Dispatch the dataset settings to the loader (built-ins, arith, jsonl, hf)."""
    kwargs: dict = {}
    if settings.name == "arith":
        kwargs = {"seed": settings.arith_seed, "difficulty": settings.arith}
    elif settings.name in ("jsonl", "hf"):
        kwargs = {
            ("path" if settings.name == "jsonl" else "name"): settings.path,
            # Without an explicit name, problems are filed under the source's file/folder name.
            "dataset_name": settings.dataset_name or Path(settings.path or "").stem or settings.name,
            "question_field": settings.question_field,
            "answer_field": settings.answer_field,
            "answer_kind": settings.answer_kind,
            "gold_format": settings.gold_format,
        }
    return load_dataset_spec(settings.name, split=settings.split, limit=settings.limit, **kwargs)


def ingest_problems(store: Store, settings: DatasetSettings, run_id: str | None = None) -> IngestSummary:
    result = load_source(settings)
    rows = [{**asdict(p), "meta": to_json(p.meta)} for p in result.problems]
    with store.transaction() as con:
        new = store.insert_rows("problems", rows, con)
        store.insert_rows("quarantine", [{**asdict(q), "run_id": run_id} for q in result.quarantined], con)
    split = result.problems[0].split if result.problems else (settings.split or "")
    dataset = result.problems[0].dataset if result.problems else settings.name
    return IngestSummary(
        dataset=dataset,
        split=split,
        loaded=len(result.problems),
        new=new,
        quarantined=len(result.quarantined),
        problem_ids=[p.problem_id for p in result.problems],
    )


@task(name="ingest", cache_policy=NO_CACHE, task_run_name="ingest-{settings.name}")
def ingest_task(db: str, settings: DatasetSettings, run_id: str | None = None) -> IngestSummary:
    with Store(db) as store:
        return ingest_problems(store, settings, run_id)
