"""Generate: sample M solutions per problem, grade them, split them into steps.

One generator request per problem (``n=M``), many problems per engine call. Each request is a
``generations`` row keyed by (problem, generator, sampling, M): a rerun skips problems whose
request is already stored, and concurrent runners claim requests under a lease
(``tasks/leases.py``). Identical solution texts are stored once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from tasks import arith
from tasks.completers import (
    Completer, Completion, complete_adaptive, completer_session, get_completer, request_seeds,
)
from tasks.config import LabelConfig
from tasks.faults import checkpoint
from tasks.grading import GradeResult, Grader, extract_answer
from tasks.leases import process_claimed
from tasks.progress import progress
from tasks.steps import StepFormat, build_messages, prefix_text, split_steps
from tasks.store import Store, StoreError, content_key

PROBLEMS_PER_CALL = 32


@dataclass(frozen=True)
class GenerationSummary:
    requests: int  # generator requests made in this call (0 when everything was stored)
    solutions: int  # distinct solutions stored
    empty: int  # sampled texts with no step at all (not stored)
    tokens: int
    engine_seconds: float

    @classmethod
    def nothing(cls) -> "GenerationSummary":
        """The summary of a run that had no problem to work on."""
        return cls(0, 0, 0, 0, 0.0)


def prompt_style(problem: dict[str, Any]) -> str:
    return "numeric" if problem["answer_kind"] == "numeric" else "math"


def generation_key(problem_id: str, generator: str, params: str, n: int, step_format: StepFormat = "line") -> str:
    """The content key of one generator request. The step format changes the prompt, so it is part
    of the key (left out for ``line``, which keeps the keys of stores made before formats existed)."""
    if step_format == "line":
        return content_key(problem_id, generator, params, n)
    return content_key(problem_id, generator, params, n, step_format)


def solution_key(problem_id: str, generator: str, text: str, step_format: StepFormat = "line") -> str:
    """The content key of a distinct solution: its text split another way is another solution."""
    if step_format == "line":
        return content_key(problem_id, generator, text)
    return content_key(problem_id, generator, text, step_format)


def gold_labels(problem: dict[str, Any], steps: list[str], correct: bool) -> list[bool | None]:
    """Gold prefix labels where the problem carries gold intermediate values (arith), else None."""
    meta = problem["meta"] if isinstance(problem["meta"], dict) else json.loads(problem["meta"] or "{}")
    if "gold_values" not in meta:
        return [None] * len(steps)
    checked = arith.problem_from_meta(problem["question"], problem["gold_answer"], meta)
    return list(arith.gold_step_labels(checked, steps, correct))


def solution_rows(
    problem: dict[str, Any], generation_id: str, generator: str, text: str, num_tokens: int, grade: GradeResult,
    run_id: str, step_format: StepFormat = "line",
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    steps = split_steps(text, step_format)
    if not steps:
        return None
    solution_id = solution_key(problem["problem_id"], generator, text, step_format)
    solution = {
        "solution_id": solution_id,
        "problem_id": problem["problem_id"],
        "generation_id": generation_id,
        "generator_model": generator,
        "text": text,
        "final_answer": extract_answer(text),
        "correct": grade.correct,
        "grade_status": grade.status,
        "num_tokens": num_tokens,
        "num_steps": len(steps),
        "step_format": step_format,
        "run_id": run_id,
    }
    golds = gold_labels(problem, steps, grade.correct)
    step_rows = [
        {
            "solution_id": solution_id,
            "step_index": i + 1,
            "text": step,
            "prefix_hash": content_key(prefix_text(steps, i + 1, step_format)),
            "gold": gold,
        }
        for i, (step, gold) in enumerate(zip(steps, golds))
    ]
    return solution, step_rows


def generate_solutions(
    store: Store, problem_ids: list[str], config: LabelConfig, run_id: str, completer: Completer | None = None
) -> GenerationSummary:
    """Sample the pending generator requests of these problems, claimed batch by claimed batch."""
    completer = completer or get_completer(config.generator)
    params = config.generation.key()
    problems = store.problems_by_id(problem_ids)
    keyed = {generation_key(p["problem_id"], completer.identity, params, config.solutions, config.step_format): p
             for p in problems}
    done = store.existing_keys("generations", "generation_id", list(keyed))
    pending = [gid for gid in keyed if gid not in done]

    tally = {"requests": 0, "stored": 0, "empty": 0, "tokens": 0, "engine_seconds": 0.0}

    def compute(keys: list[str]):
        batch = [(gid, keyed[gid]) for gid in keys]
        prompts = [completer.chat_prompt(build_messages(p["question"], prompt_style(p), config.step_format))
                   for _, p in batch]
        t0 = time.perf_counter()
        outputs = complete_adaptive(completer, prompts, config.solutions, config.generation,
                                    request_seeds(config.generation, keys))
        tally["engine_seconds"] += time.perf_counter() - t0
        return _rows(batch, outputs, grader, completer.identity, params, config.solutions, run_id, config.step_format)

    def commit(keys: list[str], rows) -> int:  # a batch is stored whole or not at all
        generations, solutions, steps, batch_empty = rows
        store.insert_rows("generations", generations)
        stored = store.insert_rows("solutions", solutions)
        store.insert_rows("steps", steps)
        return stored

    def stored_now(keys: list[str], rows, stored: int) -> None:
        generations, _, _, batch_empty = rows
        tally["stored"] += stored
        tally["requests"] += len(keys)
        tally["empty"] += batch_empty
        tally["tokens"] += sum(g["num_tokens"] for g in generations)
        checkpoint("generate-batch-stored")
        advance(len(keys))

    with Grader(workers=config.grader_workers, timeout_s=config.grader_timeout_s) as grader, progress(
        "solutions", len(pending)
    ) as advance:
        process_claimed(
            store, "generation", pending, run_id, PROBLEMS_PER_CALL, config.lease_s,
            stored=lambda keys: store.existing_keys("generations", "generation_id", keys),
            compute=compute, commit=commit, on_stored_elsewhere=advance, after_commit=stored_now,
        )
    return GenerationSummary(tally["requests"], tally["stored"], tally["empty"], tally["tokens"], tally["engine_seconds"])


def _rows(
    batch: list[tuple[str, dict[str, Any]]], outputs: list[list[Completion]], grader: Grader, generator: str,
    params: str, n: int, run_id: str, step_format: StepFormat,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], int]:
    """Grade one batch of samples; build its generations, (deduplicated) solutions and steps rows."""
    samples = [(gid, p, c) for (gid, p), group in zip(batch, outputs) for c in group]
    grades = grader.grade([(extract_answer(c.text), p["gold_answer"], p["answer_kind"]) for _, p, c in samples])
    generations = [
        {"generation_id": gid, "problem_id": p["problem_id"], "generator_model": generator, "params": params, "n": n,
         "num_tokens": sum(c.num_tokens for c in group), "run_id": run_id}
        for (gid, p), group in zip(batch, outputs)
    ]
    solutions: dict[str, dict[str, Any]] = {}
    steps: list[dict[str, Any]] = []
    empty = 0
    for (gid, p, c), grade in zip(samples, grades):
        rows = solution_rows(p, gid, generator, c.text, c.num_tokens, grade, run_id, step_format)
        if rows is None:
            empty += 1
        elif rows[0]["solution_id"] not in solutions:  # identical samples: keep one
            solutions[rows[0]["solution_id"]] = rows[0]
            steps.extend(rows[1])
    return generations, list(solutions.values()), steps, empty


@task(
    name="generate",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    task_run_name="generate-{config.dataset.name}-m{config.solutions}",
)
def generate_task(problem_ids: list[str], config: LabelConfig, run_id: str) -> GenerationSummary:
    # Retrying is safe: finished requests are stored and skipped on the next attempt.
    return run_generation(problem_ids, config, run_id)


def run_generation(problem_ids: list[str], config: LabelConfig, run_id: str) -> GenerationSummary:
    """:func:`generate_solutions` with the process's generator and the configured store. The
    engine starts on its first request, with the store released (other runners need the file
    meanwhile); an engine error discards it, so a retry gets a fresh one."""
    with (
        completer_session(config.generator, not_engine_errors=(StoreError,)) as completer,
        Store(config.db) as store,
    ):
        return generate_solutions(store, problem_ids, config, run_id, completer)
