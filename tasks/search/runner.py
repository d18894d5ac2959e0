"""Beam search as an evaluation method: runs on a test pool's problems, stores every node and the
chosen answers, and reports accuracy and generated tokens like best-of-N does.

A search is identified by (verifier, generator, sampling, settings with its width, step format);
its problems are searched in chunks, each chunk's nodes and results stored in one transaction,
so a killed evaluation resumes with the problems it had not finished and a finished search costs
nothing to report again. Results land in ``eval_results`` (method ``beam(...)`` with its
parameters, ``n`` = the beam width, ``tokens`` = mean generated tokens per problem).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.best_of_n import PoolEvaluation, cached_verifier, scoring_settings
from tasks.completers import Completer, completer_session
from tasks.config import BeamSettings, EvalConfig
from tasks.evaluation import MethodResult, bootstrap_ci
from tasks.generation import prompt_style
from tasks.grading import Grader, extract_answer
from tasks.pools import Pool
from tasks.progress import progress
from tasks.registry import find_model
from tasks.search.beam import SearchOutcome, SearchProblem, beam_search, check_ranking
from tasks.steps import build_messages
from tasks.store import Store, StoreError, content_key, internal_sql, to_json
from tasks.verifiers import Verifier
from tasks.verifiers.implicit import with_readout

PROBLEMS_PER_CHUNK = 32  # problems searched together (one engine call per round) and stored together


def method_name(settings: BeamSettings, verifier_meta: dict[str, Any]) -> str:
    """The eval_results method: the search's parameters, the width being ``n`` (an implicit PRM's
    read-out is one of them)."""
    if verifier_meta.get("target") == "pav":
        reward = f"pav-verifier,alpha={verifier_meta.get('alpha')}"
    elif settings.reward == "pav":
        reward = f"pav,alpha={settings.alpha},k={settings.prover_k}"
    else:
        reward = "q"
    if verifier_meta.get("kind") == "implicit":
        reward += f",readout={verifier_meta.get('readout')}"
    return f"beam(C={settings.expansions},{reward},steps={settings.max_steps})"


def search_id(method: str, model_id: str, generator: str, params: str, settings: BeamSettings, width: int,
              step_format: str) -> str:
    return content_key("beam", method, model_id, generator, params, to_json({**settings.model_dump(), "widths": [width]}),
                       step_format)


def run_search(store: Store, pool: Pool, config: EvalConfig, model: dict[str, Any], width: int, run_id: str,
               completer: Completer, verifier: Verifier) -> MethodResult:
    """Search the pool's problems not yet searched with this configuration; the method's result
    over all of them."""
    settings = config.beam
    method = method_name(settings, verifier.meta)
    params = config.sampling.key()
    sid = search_id(method, model["model_id"], completer.identity, params, settings, width, config.step_format)
    store.insert_rows("searches", [{
        "search_id": sid, "method": method, "model_id": model["model_id"], "generator_model": completer.identity,
        "params": to_json({**config.sampling.model_dump(), "key": params}),
        "settings": to_json({**settings.model_dump(), "widths": [width]}), "step_format": config.step_format,
        "run_id": run_id,
    }])
    done = {pid for (pid,) in store.query(internal_sql("searched_problems"), {"search_id": sid}).rows}
    pending = [pid for pid in pool.problem_ids if pid not in done]
    if pending:
        problems = {p["problem_id"]: p for p in store.problems_by_id(pending)}
        with Grader(workers=config.grader_workers, timeout_s=config.grader_timeout_s) as grader, progress(
            f"beam search B={width} on {pool.dataset}", len(pending)
        ) as advance:
            for start in range(0, len(pending), PROBLEMS_PER_CHUNK):
                chunk = [problems[pid] for pid in pending[start : start + PROBLEMS_PER_CHUNK]]
                searched = [SearchProblem(p["problem_id"], p["question"],
                                          build_messages(p["question"], prompt_style(p), config.step_format))
                            for p in chunk]
                with store.released():
                    outcomes = beam_search(searched, completer, verifier, settings, width, config.sampling,
                                           config.step_format, sid)
                _store_outcomes(store, sid, chunk, outcomes, grader, run_id)
                advance(len(chunk))
    rows = store.query(internal_sql("search_results"), {"search_id": sid}).as_dicts()
    by_problem = {r["problem_id"]: r for r in rows}
    missing = [pid for pid in pool.problem_ids if pid not in by_problem]
    if missing:
        raise StoreError(f"search {sid}: {len(missing)} problems have no result (first: {missing[0]})")
    values = [float(by_problem[pid]["correct"]) for pid in pool.problem_ids]
    low, high = bootstrap_ci(values, seed=config.seed)
    tokens = math.fsum(by_problem[pid]["tokens"] for pid in pool.problem_ids) / len(values)
    return MethodResult(method, settings.select, width, math.fsum(values) / len(values), len(values), low, high, tokens)


def _store_outcomes(store: Store, sid: str, problems: list[dict[str, Any]], outcomes: list[SearchOutcome],
                    grader: Grader, run_id: str) -> None:
    """Grade the chosen answers; store the chunk's nodes and results together."""
    golds = {p["problem_id"]: p for p in problems}
    answers = {o.problem_id: extract_answer(o.chosen.solution) for o in outcomes if o.chosen is not None}
    grades = dict(zip(answers, grader.grade(
        [(a, golds[pid]["gold_answer"], golds[pid]["answer_kind"]) for pid, a in answers.items()])))
    nodes = [{
        "search_id": sid, "problem_id": o.problem_id, "node_id": n.node_id, "parent_id": n.parent_id,
        "depth": n.depth, "text": n.text, "num_tokens": n.num_tokens, "finish": n.finish,
        "step_score": n.step_scores[-1] if n.step_scores else None, "reward": n.reward, "outcome": n.outcome,
        "run_id": run_id,
    } for o in outcomes for n in o.nodes]
    results = []
    for o in outcomes:
        grade = grades.get(o.problem_id)
        results.append({
            "search_id": sid, "problem_id": o.problem_id, "node_id": o.chosen.node_id if o.chosen else None,
            "text": o.chosen.solution if o.chosen else None,
            "final_answer": answers.get(o.problem_id),
            "correct": bool(grade and grade.correct), "grade_status": grade.status if grade else "no_candidate",
            "score": o.score, "completed": o.completed, "tokens": o.tokens, "run_id": run_id,
        })
    with store.transaction():
        store.insert_rows("search_nodes", nodes)
        store.insert_rows("search_results", results)


def search_pool(store: Store, pool: Pool, config: EvalConfig, run_id: str) -> list[MethodResult]:
    """Beam search at every configured width with the evaluation's PRM (an implicit PRM scores
    through ``config.implicit_readout``); results stored in ``eval_results`` under the pool."""
    model = find_model(store, config.prm, "prm")
    if model is None:
        raise StoreError(f"{store.path}: beam search needs a registered PRM (run `prmf train` first, or pass --prm)")
    check_ranking(config.beam, model["kind"], config.implicit_readout)  # before the engine starts
    results = []
    with completer_session(config.generator, not_engine_errors=(StoreError,)) as completer:
        verifier = with_readout(cached_verifier(model["path"], scoring_settings(config)), config.implicit_readout)
        for width in config.beam.widths:
            results.append(run_search(store, pool, config, model, width, run_id, completer, verifier))
    with store.transaction():
        store.insert_rows("eval_results", [{"run_id": run_id, "pool_id": pool.pool_id, "dataset": pool.dataset,
                                            "model_id": model["model_id"], **r.__dict__} for r in results],
                          skip_existing=False)
    return results


@task(name="beam-search", cache_policy=NO_CACHE, task_run_name="beam-search-{evaluation.dataset}")
def beam_search_task(config: EvalConfig, pool: Pool, evaluation: PoolEvaluation, run_id: str) -> PoolEvaluation:
    """The pool's evaluation with the beam-search results added."""
    with Store(config.db) as store:
        results = search_pool(store, pool, config, run_id)
    return replace(evaluation, results=(*evaluation.results, *results))
