"""Math-Shepherd labelling: N rollouts from every step prefix, graded on their final answer.

For a solution with S steps, prefixes 1..S-1 each get N rollouts (the complete solution's
estimate is its own correctness, derived in the ``step_estimates`` view). A prefix is one
*work unit*, keyed by (problem, prefix text, completer, sampling, strategy, budget): solutions
that share a prefix share its rollouts, and a stored unit is never redone. Units are batched
across solutions so each engine call carries many prefixes; each batch is one transaction.
Runners sharing a store claim batches under a lease (``tasks/leases.py``), so two runs on
overlapping work split it instead of both doing it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from tasks.completers import (
    Completer, CompleterError, Completion, complete_adaptive, completer_session, get_completer,
)
from tasks.config import LabelConfig
from tasks.faults import checkpoint
from tasks.generation import prompt_style
from tasks.grading import Grader, extract_answer
from tasks.leases import claimed_batches, release
from tasks.models import resolve_model
from tasks.progress import progress
from tasks.steps import StepFormat, build_messages, prefix_text
from tasks.store import Store, StoreError, content_key

STRATEGY = "math_shepherd"


@dataclass(frozen=True)
class WorkUnit:
    unit_id: str
    problem: dict[str, Any]
    prefix: str
    prefix_hash: str
    solution_id: str  # the first solution (and step) that needs this prefix
    step_index: int
    step_format: StepFormat = "line"


@dataclass(frozen=True)
class LabelSummary:
    units_total: int  # distinct step prefixes of the selected solutions
    units_done_before: int  # already stored when the call started
    units_labelled: int  # computed and stored by this call
    units_by_other_runs: int  # stored meanwhile by another runner sharing the store
    units_recomputed: int  # computed here but stored first by another runner (a lease that lapsed)
    rollouts: int
    tokens: int
    engine_seconds: float

    @classmethod
    def nothing(cls) -> "LabelSummary":
        """The summary of a run that had no problem to work on."""
        return cls(0, 0, 0, 0, 0, 0, 0, 0.0)


def plan_units(store: Store, problem_ids: list[str], config: LabelConfig, completer_identity: str) -> list[WorkUnit]:
    """All step-prefix units of the generator's solutions for these problems (deduplicated)."""
    generator = resolve_model(config.generator.model).identity
    problems = {p["problem_id"]: p for p in store.problems_by_id(problem_ids)}
    params = config.rollout.key()
    units: dict[str, WorkUnit] = {}
    rows = store.solution_steps(problem_ids, generator)
    by_solution: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_solution.setdefault(row["solution_id"], []).append(row)
    for solution_id, steps in by_solution.items():
        texts = [s["text"] for s in steps]
        problem = problems[steps[0]["problem_id"]]
        step_format = steps[0]["step_format"]  # as the solution was split, so the prefix is its own text
        for step in steps[:-1]:  # the complete solution is its own estimate
            k = step["step_index"]
            unit_id = content_key(problem["problem_id"], step["prefix_hash"], completer_identity, params, STRATEGY, config.rollouts)
            if unit_id not in units:
                units[unit_id] = WorkUnit(unit_id, problem, prefix_text(texts, k, step_format), step["prefix_hash"],
                                          solution_id, k, step_format)
    return list(units.values())


def label_prefixes(
    store: Store, problem_ids: list[str], config: LabelConfig, run_id: str, completer: Completer | None = None
) -> LabelSummary:
    """Label every pending step prefix of these problems' solutions, batch by claimed batch.

    The store is released while the engine and the grader work, so other runners (and ad hoc
    queries) can use it; each batch is stored in one transaction with the release of its claims.
    """
    completer = completer or get_completer(config.completer_settings)
    units = {u.unit_id: u for u in plan_units(store, problem_ids, config, completer.identity)}
    done = store.existing_keys("work_units", "unit_id", list(units))
    pending = [key for key in units if key not in done]

    labelled = elsewhere = recomputed = rollouts = tokens = 0
    engine_seconds = 0.0
    with Grader(workers=config.grader_workers, timeout_s=config.grader_timeout_s) as grader, progress(
        "step prefixes", len(pending)
    ) as advance:

        def stored_elsewhere(count: int) -> None:
            nonlocal elsewhere
            elsewhere += count
            advance(count)

        for keys in claimed_batches(
            store, "label", pending, run_id, config.batch_prefixes, config.lease_s,
            stored=lambda keys: store.existing_keys("work_units", "unit_id", keys),
            on_stored_elsewhere=stored_elsewhere,
        ):
            batch = [units[k] for k in keys]
            with store.released():  # other runners may store meanwhile
                t0 = time.perf_counter()
                outputs = _complete(completer, batch, config)
                engine_seconds += time.perf_counter() - t0
                checkpoint("label-batch-generated")
                unit_rows, rollout_rows = _rows(batch, outputs, grader, completer.identity, config, run_id)
            tokens += sum(r["num_tokens"] for r in rollout_rows)
            with store.transaction():  # units, their rollouts and the claims' release: all or nothing
                inserted = store.insert_rows("work_units", unit_rows)
                checkpoint("label-in-transaction")
                rollouts += store.insert_rows("rollouts", rollout_rows)
                release(store, run_id, keys)
            labelled += inserted
            recomputed += len(batch) - inserted
            checkpoint("label-batch-stored")
            advance(len(batch))
    return LabelSummary(len(units), len(done), labelled, elsewhere, recomputed, rollouts, tokens, engine_seconds)


def _complete(completer: Completer, batch: list[WorkUnit], config: LabelConfig) -> list[list[Completion]]:
    prompts = [
        completer.chat_prompt(build_messages(u.problem["question"], prompt_style(u.problem), u.step_format), u.prefix)
        for u in batch
    ]
    try:
        return complete_adaptive(completer, prompts, config.rollouts, config.rollout)
    except CompleterError as exc:
        first = batch[0]
        more = f" and {len(batch) - 1} more" if len(batch) > 1 else ""
        raise CompleterError(
            f"{exc} -- while labelling unit {first.unit_id} (problem {first.problem['problem_id']}, "
            f"step {first.step_index}){more}; stored units are kept, rerun to resume"
        ) from exc


def _rows(
    batch: list[WorkUnit], outputs: list[list[Completion]], grader: Grader, completer_identity: str,
    config: LabelConfig, run_id: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Grade the rollouts and build the work_units and rollouts rows of one batch."""
    params = config.rollout.key()
    # The answer is read from prefix + rollout: the full solution the rollout completes.
    answers = [extract_answer(u.prefix + c.text) for u, group in zip(batch, outputs) for c in group]
    golds = [(u.problem["gold_answer"], u.problem["answer_kind"]) for u, group in zip(batch, outputs) for _ in group]
    graded = iter(zip(answers, grader.grade([(a, gold, kind) for a, (gold, kind) in zip(answers, golds)])))
    unit_rows, rollout_rows = [], []
    for u, group in zip(batch, outputs):
        unit_rows.append(
            {"unit_id": u.unit_id, "problem_id": u.problem["problem_id"], "prefix_hash": u.prefix_hash,
             "completer_model": completer_identity, "params": params, "strategy": STRATEGY,
             "budget": config.rollouts, "solution_id": u.solution_id, "step_index": u.step_index, "run_id": run_id}
        )
        for i, c in enumerate(group):
            answer, grade = next(graded)
            rollout_rows.append(
                {"rollout_id": f"{u.unit_id}:{i}", "unit_id": u.unit_id, "sample_index": i,
                 "solution_id": u.solution_id, "step_index": u.step_index, "text": c.text, "answer": answer,
                 "correct": grade.correct, "grade_status": grade.status, "num_tokens": c.num_tokens, "run_id": run_id}
            )
    return unit_rows, rollout_rows


@task(
    name="label-prefixes",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    task_run_name="label-{config.dataset.name}-n{config.rollouts}",
)
def label_task(problem_ids: list[str], config: LabelConfig, run_id: str) -> LabelSummary:
    # Retrying is safe: stored units are skipped on the next attempt. The engine starts before
    # the store is opened: a start takes tens of seconds and other runners need the file.
    with (
        completer_session(config.completer_settings, not_engine_errors=(StoreError,)) as completer,
        Store(config.db) as store,
    ):
        return label_prefixes(store, problem_ids, config, run_id, completer)
