"""Best-of-N evaluation of registered reward models on stored candidate pools.

A model scores each pool candidate once (``eval_scores``); the selection methods of
:mod:`tasks.evaluation` then run at every N and their accuracies, with 95% bootstrap intervals,
are stored in ``eval_results`` under the evaluation's run id.

An implicit PRM (``--prm implicit-...``) fills the PRM slot: ``eval_scores`` holds its step
rewards r_t (its ``step`` read-out) whatever the evaluation's read-out, and the read-out
(``EvalConfig.implicit_readout``: r_t, q_t or sigmoid(q_t), see :func:`tasks.verifiers.implicit.apply_readout`)
is applied when the scores are loaded, so one cached scoring serves every read-out.
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
from tasks.diagnostics import auc, length_bias
from tasks.evaluation import AGGREGATIONS, Candidate, MethodResult, aggregate, evaluate_pool
from tasks.pools import FILE_SCORES, Pool, ensure_generated_pool, import_external_pool, load_candidates
from tasks.progress import progress
from tasks.registry import find_model
from tasks.store import Store, StoreError, internal_sql
from tasks.verifiers import ScoringSettings, Verifier, load_verifier, score_distinct
from tasks.verifiers.implicit import apply_readout, with_readout


@dataclass(frozen=True)
class ScorerDiagnostic:
    """How well one reward model's solution score (one aggregation) ranks a pool's candidates.

    ``auc``: probability that a correct candidate outscores an incorrect one (0.5 = chance; None
    when all candidates are correct or none is). ``spearman_steps`` / ``spearman_tokens``: rank
    correlation of the score with the number of steps / tokens (length bias). ``truncated``:
    candidates longer than the scorer's context, scored on their final steps.
    """

    model_id: str
    aggregation: str | None
    candidates: int
    correct: int
    truncated: int
    auc: float | None
    spearman_steps: float | None
    spearman_tokens: float | None


@dataclass(frozen=True)
class PoolEvaluation:
    """One pool's results: which models were used, every (method, aggregation, N) accuracy and the
    scorers' diagnostics."""

    pool_id: str
    dataset: str
    split: str
    problems: int
    prm: str | None
    orm: str | None
    results: tuple[MethodResult, ...]
    line_errors: tuple[str, ...] = ()
    diagnostics: tuple[ScorerDiagnostic, ...] = ()


@lru_cache(maxsize=2)
def cached_verifier(path: str, scoring: ScoringSettings) -> Verifier:
    """Verifiers stay loaded across the pools of one evaluation (and the PRM and ORM both fit)."""
    return load_verifier(path, scoring)


def scoring_settings(config: EvalConfig) -> ScoringSettings:
    return ScoringSettings(batch_size=config.score_batch_size, batch_tokens=config.score_batch_tokens,
                           max_length=config.score_max_length)


def score_pool(store: Store, pool: Pool, model: dict[str, Any], scoring: ScoringSettings) -> int:
    """Score the pool's candidates this model has not scored yet; returns how many it scored.

    ``scoring.max_length``: tokens the model reads per candidate (None: its context window); a
    longer candidate is scored on its final steps and stored with ``truncated``. An implicit PRM
    stores its step rewards r_t (read-out ``step``), whatever its prm.json says.
    """
    missing = store.query(internal_sql("unscored_candidates"), {"model_id": model["model_id"], "pool_id": pool.pool_id}
                          ).as_dicts()
    wanted = set(pool.problem_ids)
    missing = [m for m in missing if m["problem_id"] in wanted]
    if not missing:
        return 0
    items = [(m["question"], tuple(json.loads(m["steps"]))) for m in missing]
    with store.released(), progress(f"scoring {pool.dataset} with {model['model_id']}", len(set(items))) as advance:
        verifier = with_readout(cached_verifier(model["path"], scoring), "step")
        scores = score_distinct(verifier, items, advance)
    rows = [{"model_id": model["model_id"], "pool_id": pool.pool_id, "problem_id": m["problem_id"],
             "candidate_index": m["candidate_index"], "step_scores": list(s.step_scores), "truncated": s.truncated}
            for m, s in zip(missing, scores)]
    with store.transaction():
        store.insert_rows("eval_scores", rows)
    return len(rows)


def _read(step_scores: Sequence[float | None], readout: str | None) -> tuple[float | None, ...]:
    """Stored scores as evaluated: as stored (``readout`` None), or an implicit PRM's read-out."""
    return tuple(step_scores) if readout is None else apply_readout(step_scores, readout)


def model_readout(model: dict[str, Any] | None, config: EvalConfig) -> str | None:
    """The read-out applied to a registered model's stored scores: the configured one for an
    implicit PRM, None (as stored) for any other model."""
    return config.implicit_readout if model is not None and model["kind"] == "implicit" else None


def _scores(store: Store, pool: Pool, model_id: str, readout: str | None = None
            ) -> dict[tuple[str, int], tuple[tuple[float | None, ...], bool]]:
    rows = store.query(internal_sql("pool_scores"), {"model_id": model_id, "pool_id": pool.pool_id}).rows
    return {(p, i): (_read(s, readout), bool(t)) for p, i, s, t in rows}


def _require_scored(pool: Pool, model_id: str, scores: dict, keys: Sequence[tuple[str, int]]) -> None:
    """Every candidate must have this model's scores: a method never vanishes from a table silently."""
    unscored = [f"{p}#{i}" for p, i in keys if (p, i) not in scores]
    if unscored:
        shown = ", ".join(unscored[:5]) + (f" and {len(unscored) - 5} more" if len(unscored) > 5 else "")
        raise StoreError(f"pool {pool.dataset}/{pool.split} ({pool.pool_id}): {len(unscored)} of {len(keys)} "
                         f"candidates have no scores from {model_id}: {shown}")


def pool_candidates(
    store: Store, pool: Pool, prm_id: str | None, orm_id: str | None, prm_readout: str | None = None
) -> tuple[list[str], list[list[Candidate]]]:
    """The pool's problems (keys) and their candidates, with the given models' scores attached
    (``prm_readout``: the read-out of an implicit PRM's stored step rewards, see :func:`model_readout`).

    Raises StoreError naming the candidates a given model has not scored.
    """
    by_problem = load_candidates(store, pool)
    keys = [pid for pid in pool.problem_ids if pid in by_problem]
    wanted = [(pid, row["candidate_index"]) for pid in keys for row in by_problem[pid]]
    prm_scores = _scores(store, pool, prm_id, prm_readout) if prm_id else {}
    orm_scores = _scores(store, pool, orm_id) if orm_id else {}
    for model_id, scores in ((prm_id, prm_scores), (orm_id, orm_scores)):
        if model_id:
            _require_scored(pool, model_id, scores, wanted)
    problems = [[
        Candidate(
            answer=row["final_answer"], correct=row["correct"],
            step_scores=prm_scores[(pid, row["candidate_index"])][0] if prm_id else None,
            outcome_score=orm_scores[(pid, row["candidate_index"])][0][-1] if orm_id else None,
            num_tokens=row["num_tokens"],
        ) for row in by_problem[pid]] for pid in keys]
    return keys, problems


def model_candidates(store: Store, pool: Pool, model: dict[str, Any] | None, config: EvalConfig
                     ) -> tuple[list[str], list[list[Candidate]]]:
    """:func:`pool_candidates` with one registered model in its slot: an ORM's outcome scores, a
    PRM's or implicit PRM's step scores (the latter read as ``config`` says); None: no scores."""
    if model is None:
        return pool_candidates(store, pool, None, None)
    if model["kind"] == "orm":
        return pool_candidates(store, pool, None, model["model_id"])
    return pool_candidates(store, pool, model["model_id"], None, model_readout(model, config))


def usable_ns(ns: Sequence[int], problems: Sequence[Sequence[Candidate]]) -> list[int]:
    """The Ns every problem has enough candidates for (ascending); the smallest pool size if none."""
    available = min(len(cands) for cands in problems)
    return [n for n in ns if n <= available] or [available]


def diagnose(store: Store, pool: Pool, model_id: str, kind: str, readout: str | None = None) -> list[ScorerDiagnostic]:
    """AUC against correctness and length bias of a model's solution score on the pool's evaluated
    candidates (all N_max of each problem); a PRM once per aggregation (``readout``: as in
    :func:`pool_candidates`)."""
    wanted = set(pool.problem_ids)
    rows = [r for r in store.query(internal_sql("pool_scores_with_lengths"),
                                   {"model_id": model_id, "pool_id": pool.pool_id}).as_dicts()
            if r["problem_id"] in wanted]
    if not rows:
        return []
    labels = [bool(r["correct"]) for r in rows]
    steps = [r["num_steps"] for r in rows]
    tokens = [r["num_tokens"] for r in rows]
    truncated = sum(bool(r["truncated"]) for r in rows)
    aggregations: tuple[str | None, ...] = AGGREGATIONS if kind == "prm" else (None,)
    found = []
    read = [_read(r["step_scores"], readout) for r in rows]
    for how in aggregations:
        scores = [aggregate(s, how) if how else s[-1] for s in read]
        bias = length_bias(scores, steps, tokens)
        found.append(ScorerDiagnostic(model_id, how, len(rows), sum(labels), truncated, auc(scores, labels),
                                      bias["spearman_steps"], bias["spearman_tokens"]))
    return found


def evaluate_models(store: Store, pool: Pool, config: EvalConfig, run_id: str) -> PoolEvaluation:
    """Score the pool with the configured PRM and ORM (when registered), store every accuracy and
    the scorers' diagnostics.

    An external pool's own ``scores`` stand in for the PRM when no PRM is named. An implicit PRM
    is evaluated on its ``config.implicit_readout``.
    """
    prm = find_model(store, config.prm, "prm")
    orm = find_model(store, config.orm, "orm")
    has_file_scores = bool(store.scalar(internal_sql("count_pool_scores"),
                                        {"model_id": FILE_SCORES, "pool_id": pool.pool_id}))
    if has_file_scores and config.prm is None:
        prm_id: str | None = FILE_SCORES
        readout: str | None = None  # the pool file's own scores, as they are
    else:
        prm_id = prm["model_id"] if prm else None
        readout = model_readout(prm, config)
        if prm:
            score_pool(store, pool, prm, scoring_settings(config))
    if orm:
        score_pool(store, pool, orm, scoring_settings(config))
    orm_id = orm["model_id"] if orm else None
    keys, problems = pool_candidates(store, pool, prm_id, orm_id, readout)
    if not problems:
        raise StoreError(f"pool {pool.pool_id} ({pool.dataset}) has no candidates for its problems")
    results = evaluate_pool(problems, usable_ns(config.ns, problems), keys, seed=config.seed)
    diagnostics = [d for model_id, kind, read in ((prm_id, "prm", readout), (orm_id, "orm", None)) if model_id
                   for d in diagnose(store, pool, model_id, kind, read)]
    used = {"prm_best_of_n": prm_id, "prm_weighted_vote": prm_id, "orm_best_of_n": orm_id}
    with store.transaction():
        store.insert_rows("eval_results", [{
            "run_id": run_id, "pool_id": pool.pool_id, "dataset": pool.dataset, "model_id": used.get(r.method),
            **asdict(r),
        } for r in results], skip_existing=False)
        store.insert_rows("eval_diagnostics", [{
            "run_id": run_id, "pool_id": pool.pool_id, "dataset": pool.dataset, "split": pool.split, **asdict(d),
        } for d in diagnostics], skip_existing=False)
    return PoolEvaluation(pool.pool_id, pool.dataset, pool.split, len(problems), prm_id, orm_id, tuple(results),
                          tuple(str(e) for e in pool.line_errors), tuple(diagnostics))


# --- presentation -------------------------------------------------------------------------------


def method_name(result: MethodResult) -> str:
    return f"{result.method} ({result.aggregation})" if result.aggregation else result.method


def results_table(evaluation: PoolEvaluation) -> tuple[list[str], list[list[Any]]]:
    """Rows: one per method; columns: accuracy [95% CI] at each N, and a note flagging a selector
    that does worse than pass@1 (picking a candidate at random) at the largest N."""
    ns = sorted({r.n for r in evaluation.results})
    columns = ["method", *(f"N={n}" for n in ns), "note"]
    rows: dict[str, dict[int, MethodResult]] = {}
    for r in evaluation.results:
        rows.setdefault(method_name(r), {})[r.n] = r
    chance = {r.n: r.accuracy for r in evaluation.results if r.method == "pass@1"}
    table = []
    for name, cells in rows.items():
        top = cells.get(ns[-1])
        worse = top is not None and top.method != "pass@1" and top.accuracy < chance.get(top.n, 0.0)
        table.append([name, *(f"{cells[n].accuracy:.3f} [{cells[n].ci_low:.2f}, {cells[n].ci_high:.2f}]"
                              if n in cells else "" for n in ns),
                      f"worse than pass@1 at N={ns[-1]}" if worse else ""])
    return columns, table


def diagnostics_table(evaluation: PoolEvaluation) -> tuple[list[str], list[list[Any]]]:
    """One row per scorer and aggregation: AUC against correctness, length bias, truncation."""
    columns = ["model", "score", "candidates (correct)", "AUC", "Spearman vs steps", "Spearman vs tokens",
               "truncated"]
    rows = [[d.model_id, d.aggregation or "outcome", f"{d.candidates} ({d.correct})", _number(d.auc),
             _number(d.spearman_steps), _number(d.spearman_tokens), d.truncated] for d in evaluation.diagnostics]
    return columns, rows


COMPUTE_METHODS = ("majority", "orm_best_of_n", "prm_best_of_n", "prm_weighted_vote")


def compute_points(evaluation: PoolEvaluation, aggregation: str) -> list[MethodResult]:
    """The methods compared at equal generated tokens: majority, ORM and PRM best-of-N, weighted
    vote (PRM methods with ``aggregation``) and every search; sorted by tokens."""
    points = [r for r in evaluation.results if r.tokens is not None and (
        r.method.startswith("beam") or (r.method in COMPUTE_METHODS and r.aggregation in (None, aggregation)))]
    return sorted(points, key=lambda r: (r.tokens, method_name(r)))


def compute_table(evaluation: PoolEvaluation, aggregation: str) -> tuple[list[str], list[list[Any]]]:
    """Accuracy against generated tokens per problem, each search next to the best-of-N at the
    largest N that costs no more than it (the compute-matched comparison)."""
    points = compute_points(evaluation, aggregation)
    best_of_n = sorted((r for r in points if r.method == "prm_best_of_n"), key=lambda r: r.tokens)
    columns = ["method", "N or B", "tokens/problem", "accuracy [95% CI]", "PRM best-of-N at no more tokens"]
    rows = []
    for r in points:
        matched = ""
        if r.method.startswith("beam"):
            cheaper = [b for b in best_of_n if b.tokens <= r.tokens]
            matched = (f"N={cheaper[-1].n}: {cheaper[-1].accuracy:.3f} [{cheaper[-1].ci_low:.2f}, "
                       f"{cheaper[-1].ci_high:.2f}] at {cheaper[-1].tokens:.0f}" if cheaper else "none is as cheap")
        rows.append([method_name(r), r.n, f"{r.tokens:.0f}", f"{r.accuracy:.3f} [{r.ci_low:.2f}, {r.ci_high:.2f}]",
                     matched])
    return columns, rows


def plot_compute(evaluations: Sequence[PoolEvaluation], aggregation: str, path: Path | None = None) -> bytes:
    """Accuracy vs generated tokens per problem (log axis, 95% interval bars), one panel per pool
    with a search: the compute-matched curves of best-of-N and beam search."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [e for e in evaluations if any(r.method.startswith("beam") for r in e.results)] or list(evaluations)
    fig, axes = plt.subplots(1, len(shown), figsize=(6.5 * len(shown), 4.4), squeeze=False)
    for ax, evaluation in zip(axes[0], shown):
        curves: dict[str, list[MethodResult]] = {}
        for r in compute_points(evaluation, aggregation):
            curves.setdefault(method_name(r), []).append(r)
        for name, points in curves.items():
            ys = [p.accuracy for p in points]
            ax.errorbar([p.tokens for p in points], ys, yerr=[[y - p.ci_low for y, p in zip(ys, points)],
                                                             [p.ci_high - y for y, p in zip(ys, points)]],
                        marker="s" if name.startswith("beam") else "o", capsize=2, elinewidth=0.8, label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("generated tokens per problem")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{evaluation.dataset}/{evaluation.split} ({evaluation.problems} problems, 95% CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig, path)


def _png(fig: Any, path: Path | None) -> bytes:
    """The figure as PNG bytes (closed afterwards), also written to ``path`` when given."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    data = buffer.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


def compute_plot_path(plot: Path | None) -> Path | None:
    """Where the accuracy-vs-tokens plot goes: next to the accuracy-vs-N plot."""
    return None if plot is None else Path(plot).with_name(f"{Path(plot).stem}-tokens.png")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


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
    return _png(fig, path)


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
