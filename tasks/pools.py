"""Candidate pools for best-of-N: sampled once per dataset, stored, reused by every model version.

A generated pool is identified by (dataset, split, generator, sampling, N_max); its problems are
the evaluation slice's problems, added as evaluations ask for them, so a larger ``--limit``
extends the pool instead of resampling it. Problems are sampled through the factory's shared
work queue (``tasks/leases.py``): claimed in batches, each batch's candidates stored in one
transaction, so a killed evaluation resumes with the problems it had not finished and two
evaluations filling one pool split its problems.

External pools (``prmf eval --pool FILE``) are imported into the same tables, keyed by the file's
bytes: bad lines are reported (file:line: reason) and skipped, the rest are evaluated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.completers import Completer, complete_adaptive, completer_session, request_seeds
from tasks.config import DatasetSettings, EvalConfig
from tasks.evaluation import PoolLineError, PoolProblem, load_pool
from tasks.generation import prompt_style
from tasks.grading import Grader, extract_answer, parse_number
from tasks.ingest import ingest_problems
from tasks.leases import process_claimed
from tasks.models import resolve_model
from tasks.progress import progress
from tasks.steps import StepFormat, build_messages, split_steps
from tasks.store import Store, StoreError, content_key, internal_sql, to_json

PROBLEMS_PER_CALL = 16
POOL_LEASE_S = 120.0  # as LabelConfig.lease_s: renewed every 40 s while the sampler lives
FILE_SCORES = "file"  # eval_scores.model_id of scores given in an external pool file


@dataclass(frozen=True)
class Pool:
    pool_id: str
    dataset: str
    split: str
    problem_ids: tuple[str, ...]  # the evaluated problems, in source order
    generated_now: int = 0  # problems whose candidates this call sampled
    line_errors: tuple[PoolLineError, ...] = ()


def candidate_steps(text: str, step_format: StepFormat = "line") -> list[str]:
    """The steps a reward model scores: the text split in ``step_format``, or the whole text when
    it has no step."""
    return split_steps(text, step_format) or [text.strip() or "(empty response)"]


def generated_pool_id(dataset: str, split: str, generator: str, params: str, n_max: int,
                      step_format: StepFormat = "line") -> str:
    """A pool's identity; the step format is part of it except for ``line`` (the ids of stores made
    before formats existed)."""
    if step_format == "line":
        return content_key("pool", dataset, split, generator, params, n_max)
    return content_key("pool", dataset, split, generator, params, n_max, step_format)


def ensure_generated_pool(store: Store, settings: DatasetSettings, config: EvalConfig, run_id: str) -> Pool:
    """The pool for ``settings``' problems, sampling the candidates of problems not in it yet
    (the engine starts only then: a pool that is complete costs no engine start)."""
    ingested = ingest_problems(store, settings, run_id, config.grader_workers, config.grader_timeout_s)
    if not ingested.problem_ids:
        raise ValueError(f"dataset {settings.name}/{settings.split}: no valid problems to evaluate")
    params = config.sampling.key()
    generator = resolve_model(config.generator.model).identity  # the engine starts only if needed
    pool_id = generated_pool_id(ingested.dataset, ingested.split, generator, params, config.n_max, config.step_format)
    store.insert_rows("eval_pools", [{
        "pool_id": pool_id, "dataset": ingested.dataset, "split": ingested.split, "source": "generated",
        "generator_model": generator, "params": params, "n_max": config.n_max, "step_format": config.step_format,
        "run_id": run_id,
    }])
    done = {r[0] for r in store.query(internal_sql("pool_problems"), {"pool_id": pool_id}).rows}
    pending = [pid for pid in ingested.problem_ids if pid not in done]
    if pending:
        # A failed engine is discarded, so a retry starts a fresh one; the session's engine is
        # cached per settings, so every pool of one evaluation shares it.
        with completer_session(config.generator, not_engine_errors=(StoreError,)) as completer:
            _sample(store, pool_id, store.problems_by_id(pending), config, run_id, completer)
    return Pool(pool_id, ingested.dataset, ingested.split, tuple(ingested.problem_ids), len(pending))


def _sample(store: Store, pool_id: str, problems: list[dict[str, Any]], config: EvalConfig, run_id: str,
            completer: Completer) -> None:
    """Sample the problems' candidates through the shared work queue (``tasks/leases.py``): two
    evaluations filling one pool split the problems instead of both sampling them."""
    keyed = {content_key(pool_id, p["problem_id"]): p for p in problems}

    def stored(keys: Sequence[str]) -> set[str]:
        done = {r[0] for r in store.query(internal_sql("pool_problems"), {"pool_id": pool_id}).rows}
        return {k for k in keys if keyed[k]["problem_id"] in done}

    def compute(keys: list[str]) -> list[dict[str, Any]]:
        batch = [keyed[k] for k in keys]
        prompts = [completer.chat_prompt(build_messages(p["question"], prompt_style(p), config.step_format))
                   for p in batch]
        outputs = complete_adaptive(completer, prompts, config.n_max, config.sampling,
                                    request_seeds(config.sampling, keys))
        samples = [(p, i, c, extract_answer(c.text)) for p, group in zip(batch, outputs) for i, c in enumerate(group)]
        grades = grader.grade([(answer, p["gold_answer"], p["answer_kind"]) for p, _, _, answer in samples])
        return [{
            "pool_id": pool_id, "problem_id": p["problem_id"], "candidate_index": i, "question": p["question"],
            "gold_answer": p["gold_answer"], "text": c.text, "steps": to_json(candidate_steps(c.text, config.step_format)),
            "final_answer": answer, "correct": g.correct, "grade_status": g.status, "num_tokens": c.num_tokens,
            "run_id": run_id,
        } for (p, i, c, answer), g in zip(samples, grades)]

    with Grader(workers=config.grader_workers, timeout_s=config.grader_timeout_s) as grader, progress(
        f"pool {problems[0]['dataset']}: sampling {config.n_max} candidates", len(problems)
    ) as advance:
        process_claimed(
            store, "pool", list(keyed), run_id, PROBLEMS_PER_CALL, POOL_LEASE_S, stored=stored, compute=compute,
            commit=lambda keys, rows: store.insert_rows("eval_candidates", rows),  # a problem's candidates: whole or none
            on_stored_elsewhere=advance, after_commit=lambda keys, rows, stored: advance(len(keys)),
        )


def import_external_pool(store: Store, path: Path, config: EvalConfig, run_id: str) -> Pool:
    """Import a JSONL pool file (see :func:`tasks.evaluation.load_pool`); grade responses that
    come without ``correct``; store given ``scores`` under model id ``file``."""
    problems, errors = load_pool(path)
    problems, errors = _readable_golds(problems, errors, path, config)
    if not problems:
        detail = "; ".join(str(e) for e in errors[:3]) or "the file is empty"
        raise ValueError(f"{path}: no valid problem in the pool ({detail})")
    pool_id = content_key("external", Path(path).read_bytes().hex())
    dataset = Path(path).stem
    n_max = max(len(p.responses) for p in problems)
    keys = [content_key("external", p.question, p.gold) for p in problems]
    store.insert_rows("eval_pools", [{
        "pool_id": pool_id, "dataset": dataset, "split": "external", "source": str(Path(path).resolve()),
        "generator_model": None, "params": None, "n_max": n_max, "step_format": config.step_format, "run_id": run_id,
    }])
    if not store.scalar(internal_sql("count_pool_candidates"), {"pool_id": pool_id}):
        with Grader(workers=config.grader_workers, timeout_s=config.grader_timeout_s) as grader:
            rows, scores = _external_rows(pool_id, problems, keys, grader, run_id, config.step_format)
        with store.transaction():
            store.insert_rows("eval_candidates", rows)
            store.insert_rows("eval_scores", scores)
    return Pool(pool_id, dataset, "external", tuple(dict.fromkeys(keys)), len(problems), tuple(errors))


def _gold_kind(gold: str) -> str:
    return "numeric" if parse_number(gold) is not None else "math"


def _readable_golds(problems: list[PoolProblem], errors: list[PoolLineError], path: Path, config: EvalConfig
                    ) -> tuple[list[PoolProblem], list[PoolLineError]]:
    """Lines whose gold answer the grader cannot read become line errors (only where the pool file
    leaves grading to us): graded against it, every response would count as incorrect."""
    ungraded = [p for p in problems if p.correct is None]
    if not ungraded:
        return problems, errors
    with Grader(workers=config.grader_workers, timeout_s=config.grader_timeout_s) as grader:
        reasons = dict(zip((p.line for p in ungraded), grader.check_golds([(p.gold, _gold_kind(p.gold)) for p in ungraded])))
    bad = [PoolLineError(line, why, str(path)) for line, why in reasons.items() if why]
    return [p for p in problems if not reasons.get(p.line)], sorted([*errors, *bad], key=lambda e: e.line)


def _external_rows(pool_id: str, problems: Sequence[Any], keys: Sequence[str], grader: Grader, run_id: str,
                   step_format: StepFormat):
    to_grade = [(extract_answer(r), p.gold, _gold_kind(p.gold)) for p in problems if p.correct is None
                for r in p.responses]
    grades = iter(grader.grade(to_grade)) if to_grade else iter(())
    rows, scores, seen = [], [], set()
    for problem, key in zip(problems, keys):
        if key in seen:  # the same question and gold twice: the first line wins
            continue
        seen.add(key)
        for i, response in enumerate(problem.responses):
            if problem.correct is not None:
                correct, status = problem.correct[i], "given"
            else:
                grade = next(grades)
                correct, status = grade.correct, grade.status
            rows.append({"pool_id": pool_id, "problem_id": key, "candidate_index": i, "question": problem.question,
                         "gold_answer": problem.gold, "text": response,
                         "steps": to_json(candidate_steps(response, step_format)),
                         "final_answer": extract_answer(response), "correct": correct, "grade_status": status,
                         "num_tokens": 0, "run_id": run_id})
            if problem.scores is not None:
                scores.append({"model_id": FILE_SCORES, "pool_id": pool_id, "problem_id": key,
                               "candidate_index": i, "step_scores": list(problem.scores[i])})
    return rows, scores


def load_candidates(store: Store, pool: Pool) -> dict[str, list[dict[str, Any]]]:
    """Candidates per problem (candidate_index order), for the pool's evaluated problems."""
    rows = store.query(internal_sql("pool_candidates"), {"pool_id": pool.pool_id}).as_dicts()
    wanted = set(pool.problem_ids)
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["problem_id"] in wanted:
            row["steps"] = json.loads(row["steps"])
            by_problem.setdefault(row["problem_id"], []).append(row)
    return by_problem

