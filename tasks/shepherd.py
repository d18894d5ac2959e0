"""Math-Shepherd labelling: N rollouts from every step prefix, graded on their final answer.

For a solution with S steps, prefixes 1..S-1 each get N rollouts (the complete solution's
estimate is its own correctness, derived in the ``step_estimates`` view). A prefix is one
*work unit*, keyed by (problem, prefix text, completer, sampling, strategy, budget): solutions
that share a prefix share its rollouts, and a stored unit is never redone. Units are batched
across solutions so each engine call carries many prefixes; each batch is one transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from tasks.completers import Completer, get_completer
from tasks.config import LabelConfig
from tasks.faults import checkpoint
from tasks.generation import prompt_style
from tasks.grading import Grader, extract_answer
from tasks.models import resolve_model
from tasks.progress import progress
from tasks.steps import build_messages, prefix_text
from tasks.store import Store, content_key

STRATEGY = "math_shepherd"


@dataclass(frozen=True)
class WorkUnit:
    unit_id: str
    problem: dict[str, Any]
    prefix: str
    prefix_hash: str
    solution_id: str  # the first solution (and step) that needs this prefix
    step_index: int


@dataclass(frozen=True)
class LabelSummary:
    units_total: int  # distinct step prefixes of the selected solutions
    units_done_before: int  # already stored when the call started
    units_labelled: int  # labelled by this call
    rollouts: int
    tokens: int
    engine_seconds: float


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
        for step in steps[:-1]:  # the complete solution is its own estimate
            k = step["step_index"]
            unit_id = content_key(problem["problem_id"], step["prefix_hash"], completer_identity, params, STRATEGY, config.rollouts)
            if unit_id not in units:
                units[unit_id] = WorkUnit(unit_id, problem, prefix_text(texts, k), step["prefix_hash"], solution_id, k)
    return list(units.values())


def label_prefixes(
    store: Store, problem_ids: list[str], config: LabelConfig, run_id: str, completer: Completer | None = None
) -> LabelSummary:
    completer = completer or get_completer(config.completer_settings)
    units = plan_units(store, problem_ids, config, completer.identity)
    done = store.existing_keys("work_units", "unit_id", [u.unit_id for u in units])
    pending = [u for u in units if u.unit_id not in done]
    params = config.rollout.key()

    rollouts = tokens = 0
    engine_seconds = 0.0
    with Grader(workers=config.grader_workers, timeout_s=config.grader_timeout_s) as grader, progress(
        "step prefixes", len(pending)
    ) as advance:
        for start in range(0, len(pending), config.batch_prefixes):
            batch = pending[start : start + config.batch_prefixes]
            prompts = [
                completer.chat_prompt(build_messages(u.problem["question"], prompt_style(u.problem)), u.prefix)
                for u in batch
            ]
            t0 = time.perf_counter()
            outputs = completer.complete(prompts, config.rollouts, config.rollout)
            engine_seconds += time.perf_counter() - t0
            checkpoint("label-batch-generated")
            # The answer is read from prefix + rollout: the full solution the rollout completes.
            answers = [extract_answer(u.prefix + c.text) for u, group in zip(batch, outputs) for c in group]
            kinds = [(u.problem["gold_answer"], u.problem["answer_kind"]) for u, group in zip(batch, outputs) for _ in group]
            grades = grader.grade([(a, gold, kind) for a, (gold, kind) in zip(answers, kinds)])
            unit_rows, rollout_rows = [], []
            graded = iter(zip(answers, grades))
            for u, group in zip(batch, outputs):
                unit_rows.append(
                    {"unit_id": u.unit_id, "problem_id": u.problem["problem_id"], "prefix_hash": u.prefix_hash,
                     "completer_model": completer.identity, "params": params, "strategy": STRATEGY,
                     "budget": config.rollouts, "solution_id": u.solution_id, "step_index": u.step_index,
                     "run_id": run_id}
                )
                for i, c in enumerate(group):
                    answer, grade = next(graded)
                    rollout_rows.append(
                        {"rollout_id": f"{u.unit_id}:{i}", "unit_id": u.unit_id, "sample_index": i,
                         "solution_id": u.solution_id, "step_index": u.step_index, "text": c.text,
                         "answer": answer, "correct": grade.correct,
                         "grade_status": grade.status, "num_tokens": c.num_tokens, "run_id": run_id}
                    )
                    tokens += c.num_tokens
            with store.transaction() as con:  # units and their rollouts: all or nothing
                store.insert_rows("work_units", unit_rows, con)
                checkpoint("label-in-transaction")
                rollouts += store.insert_rows("rollouts", rollout_rows, con)
            checkpoint("label-batch-stored")
            advance(len(batch))
    return LabelSummary(len(units), len(done), len(pending), rollouts, tokens, engine_seconds)


@task(
    name="label-prefixes",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    task_run_name="label-{config.dataset.name}-n{config.rollouts}",
)
def label_task(problem_ids: list[str], config: LabelConfig, run_id: str) -> LabelSummary:
    # Retrying is safe: stored units are skipped on the next attempt.
    with Store(config.db) as store:
        return label_prefixes(store, problem_ids, config, run_id)
