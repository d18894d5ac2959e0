"""Promote a new reward model only when it really selects better, judged on validation data.

Evidence. On the validation pools (problems held out of training, never a test split) both
models select one candidate per problem at N = N_max from the same stored candidates --
``prm_best_of_n`` with the configured step aggregation for a PRM or an implicit PRM (read as
``eval.implicit_readout``), ``orm_best_of_n`` for an ORM --
and a paired bootstrap over problems (:func:`tasks.diagnostics.paired_bootstrap`) compares them.
A new model is promoted when the one-sided lower bound of its gain, at ``promotion_confidence``,
is above zero. The baseline is the promoted model of its kind; a first model must beat majority
vote, the best selector that needs no verifier. Test pools are only reported, never consulted.
Every decision is stored with its evidence in ``promotion_decisions``; "registered, not promoted"
is a normal outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.best_of_n import model_candidates, score_pool, scoring_settings, usable_ns
from tasks.config import EvalConfig, FactoryConfig
from tasks.diagnostics import PairedComparison, paired_bootstrap
from tasks.evaluation import selection_outcomes
from tasks.pools import Pool
from tasks.registry import get_model, promote
from tasks.store import Store, StoreError, to_json

MAJORITY = "majority"


@dataclass(frozen=True)
class Decision:
    """A promotion decision and its evidence (the ``promotion_decisions`` row)."""

    kind: str
    candidate: str
    baseline: str  # the incumbent's model id, or 'majority'
    method: str
    aggregation: str | None
    n: int
    problems: int
    candidate_accuracy: float
    baseline_accuracy: float
    difference: float
    ci_low: float
    ci_high: float
    p_better: float
    confidence: float
    promoted: bool
    reason: str


def _method(kind: str) -> str:
    return "orm_best_of_n" if kind == "orm" else "prm_best_of_n"  # prm and implicit score steps


def validation_outcomes(store: Store, pools: Sequence[Pool], model: dict[str, Any] | None, aggregation: str,
                        config: EvalConfig) -> tuple[list[float], int]:
    """Per-problem selection outcomes over all validation pools, with the N used (each pool's
    largest usable N; the smallest of those is reported). ``model`` (a ``prm_models`` row) None:
    majority vote. An implicit PRM's step rewards are read as ``config.implicit_readout``."""
    values: list[float] = []
    used_n = []
    for pool in pools:
        if model is not None:
            score_pool(store, pool, model, scoring_settings(config))  # cached: usually nothing to do
        keys, problems = model_candidates(store, pool, model, config)
        n = usable_ns(config.ns, problems)[-1]
        used_n.append(n)
        if model is None:
            values += selection_outcomes(problems, n, keys, "majority", seed=config.seed)
        else:
            kind = model["kind"]
            values += selection_outcomes(problems, n, keys, _method(kind), aggregation if kind != "orm" else None,
                                         seed=config.seed)
    return values, min(used_n)


def _reason(promoted: bool, baseline: str, c: PairedComparison) -> str:
    against = "majority vote" if baseline == MAJORITY else f"the promoted {baseline}"
    evidence = (f"{c.difference:+.3f} over {c.items} validation problems, one-sided {c.confidence:.0%} lower bound "
                f"{c.ci_low:+.3f}")
    if promoted:
        return f"promoted: better than {against} ({evidence})"
    verdict = "worse than" if c.difference < 0 else "not better than" if c.difference == 0 else "not clearly better than"
    return f"registered, not promoted: {verdict} {against} on validation ({evidence})"


def decide(store: Store, pools: Sequence[Pool], candidate: str, incumbent: str | None, config: FactoryConfig,
           run_id: str) -> Decision:
    """Compare ``candidate`` with ``incumbent`` (or majority vote when there is none) on the
    validation pools, store the decision with its evidence, and promote when it wins."""
    test_pools = [p for p in pools if p.split == "test"]
    if test_pools:
        raise StoreError(f"promotion is decided on validation pools, got the test pool {test_pools[0].dataset}/test")
    if not pools:
        raise StoreError("no validation pool: configure eval.validation to decide promotions")
    model = get_model(store, candidate)
    kind = model["kind"]
    baseline = incumbent if incumbent not in (None, candidate) else MAJORITY
    aggregation = config.selection_aggregation
    new, n = validation_outcomes(store, pools, model, aggregation, config.eval)
    old, _ = validation_outcomes(store, pools, None if baseline == MAJORITY else get_model(store, baseline),
                                 aggregation, config.eval)
    comparison = paired_bootstrap(new, old, confidence=config.promotion_confidence, seed=config.eval.seed)
    decision = Decision(
        kind=kind, candidate=candidate, baseline=baseline, method=_method(kind),
        aggregation=aggregation if kind != "orm" else None, n=n, problems=comparison.items,
        candidate_accuracy=comparison.candidate_mean, baseline_accuracy=comparison.baseline_mean,
        difference=comparison.difference, ci_low=comparison.ci_low, ci_high=comparison.ci_high,
        p_better=comparison.p_better, confidence=comparison.confidence, promoted=comparison.better,
        reason=_reason(comparison.better, baseline, comparison),
    )
    with store.transaction() as con:  # the decision and the promotion it makes: both or neither
        store.insert_rows("promotion_decisions", [{
            "run_id": run_id, "pool_ids": to_json([p.pool_id for p in pools]), **asdict(decision),
        }], con=con, skip_existing=False)
        if decision.promoted:
            promote(store, candidate)
    return decision


@task(name="compare-and-promote", cache_policy=NO_CACHE, task_run_name="promote-{candidate}")
def decide_task(config: FactoryConfig, pools: Sequence[Pool], candidate: str, incumbent: str | None,
                run_id: str) -> Decision:
    with Store(config.db) as store:
        return decide(store, pools, candidate, incumbent, config, run_id)
