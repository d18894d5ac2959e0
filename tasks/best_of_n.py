"""Best-of-N evaluation of registered reward models on stored candidate pools.

A model scores each pool candidate once (``eval_scores``); the selection methods of
:mod:`tasks.evaluation` then run at every N and their accuracies, with 95% bootstrap intervals,
are stored in ``eval_results`` under the evaluation's run id.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import DatasetSettings, EvalConfig
from tasks.evaluation import Candidate, MethodResult, evaluate_pool
from tasks.pools import FILE_SCORES, Pool, ensure_generated_pool, import_external_pool, load_candidates
from tasks.progress import progress
from tasks.registry import find_model
from tasks.store import Store, StoreError
from tasks.training import RewardModel


@dataclass(frozen=True)
class PoolEvaluation:
    """One pool's results: which models were used and every (method, aggregation, N) accuracy."""

    pool_id: str
    dataset: str
    split: str
    problems: int
    prm: str | None
    orm: str | None
    results: tuple[MethodResult, ...]
    line_errors: tuple[str, ...] = ()


@lru_cache(maxsize=2)
def load_reward_model(path: str) -> RewardModel:
    """Reward models stay loaded across the pools of one evaluation (and the PRM and ORM both fit)."""
    return RewardModel(path)


def score_pool(store: Store, pool: Pool, model: dict[str, Any], batch_size: int) -> int:
    """Score the pool's candidates this model has not scored yet; returns how many it scored."""
    missing = store.query(
        "SELECT c.problem_id, c.candidate_index, c.question, c.steps FROM eval_candidates c "
        "ANTI JOIN eval_scores s ON s.model_id = ? AND s.pool_id = c.pool_id AND s.problem_id = c.problem_id "
        "AND s.candidate_index = c.candidate_index WHERE c.pool_id = ? ORDER BY c.problem_id, c.candidate_index",
        [model["model_id"], pool.pool_id],
    ).as_dicts()
    wanted = set(pool.problem_ids)
    missing = [m for m in missing if m["problem_id"] in wanted]
    if not missing:
        return 0
    with store.released(), progress(f"scoring {pool.dataset} with {model['model_id']}", len(missing)) as advance:
        reward_model = load_reward_model(model["path"])
        scores = reward_model.score_many([(m["question"], json.loads(m["steps"])) for m in missing],
                                         batch_size, advance)
    rows = [{"model_id": model["model_id"], "pool_id": pool.pool_id, "problem_id": m["problem_id"],
             "candidate_index": m["candidate_index"], "step_scores": s or [0.0]}  # [] only if nothing fit
            for m, s in zip(missing, scores)]
    with store.transaction():
        store.insert_rows("eval_scores", rows)
    return len(rows)


def _scores(store: Store, pool: Pool, model_id: str) -> dict[tuple[str, int], tuple[float, ...]]:
    rows = store.query("SELECT problem_id, candidate_index, step_scores FROM eval_scores "
                       "WHERE model_id = ? AND pool_id = ?", [model_id, pool.pool_id]).rows
    return {(p, i): tuple(s) for p, i, s in rows}


def pool_candidates(
    store: Store, pool: Pool, prm_id: str | None, orm_id: str | None
) -> tuple[list[str], list[list[Candidate]]]:
    """The pool's problems (keys) and their candidates, with the given models' scores attached."""
    by_problem = load_candidates(store, pool)
    prm_scores = _scores(store, pool, prm_id) if prm_id else {}
    orm_scores = _scores(store, pool, orm_id) if orm_id else {}
    keys = [pid for pid in pool.problem_ids if pid in by_problem]
    problems = [[
        Candidate(
            answer=row["final_answer"], correct=row["correct"],
            step_scores=prm_scores.get((pid, row["candidate_index"])) if prm_id else None,
            outcome_score=orm_scores[(pid, row["candidate_index"])][-1] if orm_id else None,
        ) for row in by_problem[pid]] for pid in keys]
    return keys, problems


def usable_ns(ns: Sequence[int], problems: Sequence[Sequence[Candidate]]) -> list[int]:
    """The Ns every problem has enough candidates for (ascending); the smallest pool size if none."""
    available = min(len(cands) for cands in problems)
    return [n for n in ns if n <= available] or [available]


def evaluate_models(store: Store, pool: Pool, config: EvalConfig, run_id: str) -> PoolEvaluation:
    """Score the pool with the configured PRM and ORM (when registered) and store every accuracy.

    An external pool's own ``scores`` stand in for the PRM when no PRM is named.
    """
    prm = find_model(store, config.prm, "prm")
    orm = find_model(store, config.orm, "orm")
    has_file_scores = bool(store.scalar("SELECT count(*) FROM eval_scores WHERE model_id = ? AND pool_id = ?",
                                        [FILE_SCORES, pool.pool_id]))
    if has_file_scores and config.prm is None:
        prm_id: str | None = FILE_SCORES
    else:
        prm_id = prm["model_id"] if prm else None
        if prm:
            score_pool(store, pool, prm, config.score_batch_size)
    if orm:
        score_pool(store, pool, orm, config.score_batch_size)
    orm_id = orm["model_id"] if orm else None
    keys, problems = pool_candidates(store, pool, prm_id, orm_id)
    if not problems:
        raise StoreError(f"pool {pool.pool_id} ({pool.dataset}) has no candidates for its problems")
    results = evaluate_pool(problems, usable_ns(config.ns, problems), keys, seed=config.seed)
    used = {"prm_best_of_n": prm_id, "prm_weighted_vote": prm_id, "orm_best_of_n": orm_id}
    with store.transaction():
        store.insert_rows("eval_results", [{
            "run_id": run_id, "pool_id": pool.pool_id, "dataset": pool.dataset, "model_id": used.get(r.method),
            **asdict(r),
        } for r in results], skip_existing=False)
    return PoolEvaluation(pool.pool_id, pool.dataset, pool.split, len(problems), prm_id, orm_id, tuple(results),
                          tuple(str(e) for e in pool.line_errors))


# --- presentation -------------------------------------------------------------------------------


def method_name(result: MethodResult) -> str:
    return f"{result.method} ({result.aggregation})" if result.aggregation else result.method


def results_table(evaluation: PoolEvaluation) -> tuple[list[str], list[list[Any]]]:
    """Rows: one per method, columns: accuracy [95% CI] at each N."""
    ns = sorted({r.n for r in evaluation.results})
    columns = ["method", *(f"N={n}" for n in ns)]
    rows: dict[str, dict[int, str]] = {}
    for r in evaluation.results:
        rows.setdefault(method_name(r), {})[r.n] = f"{r.accuracy:.3f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"
    return columns, [[name, *(cells.get(n, "") for n in ns)] for name, cells in rows.items()]


def plot_accuracy(evaluations: Sequence[PoolEvaluation], path: Path | None = None) -> bytes:
    """An accuracy-vs-N PNG (one panel per pool, log2 N axis, 95% interval bars); written to
    ``path`` when given. Returns the PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(evaluations), figsize=(5.5 * len(evaluations), 4.2), squeeze=False)
    for ax, evaluation in zip(axes[0], evaluations):
        curves: dict[str, list[MethodResult]] = {}
        for r in evaluation.results:
            if r.method in ("pass@1", "majority", "orm_best_of_n") or r.aggregation in ("min", None):
                curves.setdefault(method_name(r), []).append(r)
        for offset, (name, points) in enumerate(curves.items()):
            points.sort(key=lambda r: r.n)
            # Small horizontal offsets keep overlapping intervals readable.
            xs = [p.n * 2 ** (0.03 * (offset - len(curves) / 2)) for p in points]
            ys = [p.accuracy for p in points]
            ax.errorbar(xs, ys, yerr=[[y - p.ci_low for y, p in zip(ys, points)],
                                      [p.ci_high - y for y, p in zip(ys, points)]],
                        marker="o", capsize=2, elinewidth=0.8, label=name)
        ns = sorted({r.n for r in evaluation.results})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("N (candidates per problem)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)  # the same scale in every panel
        ax.set_title(f"{evaluation.dataset}/{evaluation.split} ({evaluation.problems} problems, 95% CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    data = buffer.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


# --- tasks ---------------------------------------------------------------------------------------


@task(name="prepare-pool", cache_policy=NO_CACHE,
      task_run_name="pool-{settings.name}-{settings.split}-{settings.limit}")
def prepare_pool_task(config: EvalConfig, run_id: str, settings: DatasetSettings) -> Pool:
    with Store(config.db) as store:
        return ensure_generated_pool(store, settings, config, run_id)


@task(name="import-pool", cache_policy=NO_CACHE, task_run_name="pool-file-{pool_file.name}")
def import_pool_task(config: EvalConfig, run_id: str, pool_file: Path) -> Pool:
    with Store(config.db) as store:
        return import_external_pool(store, pool_file, config, run_id)


@task(name="evaluate-pool", cache_policy=NO_CACHE, task_run_name="evaluate-{pool.dataset}")
def evaluate_pool_task(config: EvalConfig, pool: Pool, run_id: str) -> PoolEvaluation:
    with Store(config.db) as store:
        return evaluate_models(store, pool, config, run_id)
