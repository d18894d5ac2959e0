"""Ingest: load a dataset source into ``problems``; bad rows go to ``quarantine``.

Two ways to choose a run's problems (``DatasetSettings.select``):

* ``first`` -- the first ``limit`` valid problems in source order: an explicit, repeatable slice.
* ``next``  -- a data cursor: the next ``limit`` problems in source order that are not yet fully
  labelled under the run's label configuration (generator, sampling and M; completer, rollout
  sampling, strategy and N), so every scheduled run adds new data. Partly labelled problems
  (a run that was killed) come first, being earlier in the source. When fewer than ``limit``
  remain, the run takes what is left and reports the source as exhausted.

Gold answers are checked once, when a problem is first stored: a gold the grader cannot read
goes to quarantine with the reason instead of labelling every rollout of it "incorrect".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import DatasetSettings, LabelConfig
from tasks.datasets import LoadResult, ProblemRecord, QuarantineRecord, load_dataset_spec
from tasks.grading import Grader
from tasks.models import resolve_model
from tasks.store import Store, internal_sql, to_json

ARITH_CHUNK = 1000  # arith problems generated per look-ahead when a cursor scans the endless arith train split


@dataclass(frozen=True)
class IngestSummary:
    dataset: str
    split: str
    loaded: int
    new: int
    quarantined: int
    problem_ids: list[str]
    select: str = "first"
    already_labelled: int = 0  # next: problems of the scanned source already labelled under this configuration
    exhausted: bool = False  # next: the source had fewer than `limit` problems left to label

    def describe_exhaustion(self) -> str:
        return (f"{self.dataset}/{self.split} is exhausted: {self.already_labelled} problems are already labelled "
                f"with this configuration and {'none is' if not self.problem_ids else f'only {len(self.problem_ids)} are'}"
                " left; add problems to the source, or change the sampling or budget to label them again")


def load_source(settings: DatasetSettings, limit: int | None = None, start: int = 0) -> LoadResult:
    """Dispatch the dataset settings to the loader (built-ins, arith, jsonl, hf)."""
    kwargs: dict = {}
    if settings.name == "arith":
        kwargs = {"seed": settings.arith_seed, "difficulty": settings.arith, "start": start}
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
    return load_dataset_spec(settings.name, split=settings.split, limit=limit, **kwargs)


def _chunks(settings: DatasetSettings) -> Iterator[LoadResult]:
    """The whole source in order: one chunk for files; arith (endless) a chunk at a time."""
    if settings.name != "arith":
        yield load_source(settings)
        return
    start = 0
    while True:
        yield load_source(settings, ARITH_CHUNK, start)
        start += ARITH_CHUNK


def _problem_rows(problems: Sequence[ProblemRecord]) -> list[dict]:
    return [{**asdict(p), "meta": to_json(p.meta)} for p in problems]


def _quarantine_rows(records: Sequence[QuarantineRecord], run_id: str | None) -> list[dict]:
    return [{**asdict(q), "run_id": run_id} for q in records]


def store_problems(store: Store, problems: Sequence[ProblemRecord], quarantined: Sequence[QuarantineRecord],
                   run_id: str | None, grader_workers: int = 2, grader_timeout_s: float = 5.0
                   ) -> tuple[list[ProblemRecord], int, int]:
    """Store ``problems`` whose gold answer the grader can read (checked for problems not stored yet)
    and quarantine the rest with ``quarantined``. Returns (usable problems, new, quarantined)."""
    stored = store.existing_keys("problems", "problem_id", [p.problem_id for p in problems])
    fresh = [p for p in problems if p.problem_id not in stored]
    rows = pa.table({"source": [p.source for p in fresh], "line": pa.array([p.source_row for p in fresh], pa.int32())})
    known = {(s, line): why for s, line, why in store.query(internal_sql("quarantined_golds"), tables={"rows_": rows}).rows}
    bad = {p.problem_id: known[(p.source, p.source_row)] for p in fresh if (p.source, p.source_row) in known}
    unchecked = [p for p in fresh if p.problem_id not in bad]
    if unchecked:
        with Grader(workers=grader_workers, timeout_s=grader_timeout_s) as grader:
            reasons = grader.check_golds([(p.gold_answer, p.answer_kind) for p in unchecked])
        bad |= {p.problem_id: why for p, why in zip(unchecked, reasons) if why}
    rejected = [QuarantineRecord(p.source, p.source_row, bad[p.problem_id], to_json({"question": p.question,
                                                                                     "answer": p.gold_answer})[:2000])
                for p in fresh if p.problem_id in bad]
    usable = [p for p in problems if p.problem_id not in bad]
    def write() -> int:
        with store.transaction() as con:
            new = store.insert_rows("problems", _problem_rows([p for p in fresh if p.problem_id not in bad]), con)
            store.insert_rows("quarantine", _quarantine_rows([*quarantined, *rejected], run_id), con)
        return new

    return usable, store.retrying(write), len(quarantined) + len(rejected)


def ingest_problems(store: Store, settings: DatasetSettings, run_id: str | None = None, grader_workers: int = 2,
                    grader_timeout_s: float = 5.0) -> IngestSummary:
    """The first ``settings.limit`` problems of the source (an explicit slice), stored."""
    result = load_source(settings, settings.limit)
    usable, new, quarantined = store_problems(store, result.problems, result.quarantined, run_id, grader_workers,
                                              grader_timeout_s)
    return _summary(settings, result.problems, usable, new, quarantined, result.problems)


def _summary(settings: DatasetSettings, loaded: Sequence[ProblemRecord], usable: Sequence[ProblemRecord], new: int,
             quarantined: int, source_problems: Sequence[ProblemRecord], **more) -> IngestSummary:
    """``source_problems`` name the dataset and split (a source with nothing left still has a name)."""
    first = (source_problems or [None])[0]
    return IngestSummary(
        dataset=first.dataset if first else (settings.dataset_name or settings.name),
        split=first.split if first else (settings.split or ""),
        loaded=len(loaded), new=new, quarantined=quarantined, problem_ids=[p.problem_id for p in usable],
        select=settings.select, **more,
    )


def labelled_problem_ids(store: Store, problems: Sequence[ProblemRecord], config: LabelConfig) -> set[str]:
    """The ``problems`` fully labelled under ``config``: their generator request is stored and every
    solution finished its labelling (same completer, sampling, strategy, N)."""
    from tasks.generation import generation_key
    from tasks.labelling.labeller import label_key

    if not problems:
        return set()
    generator = resolve_model(config.generator.model).identity
    params = config.generation.key()
    candidates = pa.table({
        "problem_id": [p.problem_id for p in problems],
        "generation_id": [generation_key(p.problem_id, generator, params, config.solutions, config.step_format)
                          for p in problems],
    })
    completer = resolve_model(config.completer_settings.model).identity
    rows = store.query(internal_sql("labelled_problems"), {
        "generator": generator, "completer": completer, "params": config.rollout.key(), "strategy": config.strategy,
        "budget": config.rollouts, "label_key": label_key(completer, config.rollout.key(), config.strategy, config.rollouts),
    }, tables={"candidates": candidates}).rows
    return {r[0] for r in rows}


def ingest_next(store: Store, config: LabelConfig, run_id: str | None = None) -> IngestSummary:
    """The next ``limit`` problems not yet fully labelled under ``config`` (the data cursor)."""
    settings, wanted = config.dataset, config.dataset.limit
    selected: list[ProblemRecord] = []
    new = quarantined = done = 0
    exhausted = True
    named: list[ProblemRecord] = []
    for chunk in _chunks(settings):
        named = named or chunk.problems[:1]
        if not chunk.problems and not chunk.quarantined:
            break  # an arith chunk past every generable problem cannot happen; a file ends after one chunk
        labelled = labelled_problem_ids(store, chunk.problems, config)
        done += len(labelled)
        open_ = [p for p in chunk.problems if p.problem_id not in labelled]
        # Store only what this run takes (plus the chunk's bad rows); gold checks may reject some, so
        # take more from the same chunk until `limit` usable problems are found or the chunk ends.
        bad_rows = chunk.quarantined
        while open_ and len(selected) < wanted:
            take, open_ = open_[: wanted - len(selected)], open_[wanted - len(selected):]
            usable, added, rejected = store_problems(store, take, bad_rows, run_id, config.grader_workers,
                                                     config.grader_timeout_s)
            bad_rows = []
            selected += usable
            new += added
            quarantined += rejected
        if bad_rows:
            quarantined += store_problems(store, [], bad_rows, run_id)[2]
        if len(selected) >= wanted:
            exhausted = False
            break
        if settings.name != "arith":
            break
    return _summary(settings, selected, selected, new, quarantined, named, already_labelled=done, exhausted=exhausted)


def select_problems(store: Store, config: LabelConfig, run_id: str | None = None) -> IngestSummary:
    """The problems a label run works on: the explicit slice or the cursor's next ones."""
    if config.dataset.select == "next":
        return ingest_next(store, config, run_id)
    return ingest_problems(store, config.dataset, run_id, config.grader_workers, config.grader_timeout_s)


@task(name="select-problems", cache_policy=NO_CACHE,
      task_run_name="select-{config.dataset.select}-{config.dataset.limit}-{config.dataset.name}")
def select_problems_task(config: LabelConfig, run_id: str | None = None) -> IngestSummary:
    with Store(config.db) as store:
        return select_problems(store, config, run_id)
