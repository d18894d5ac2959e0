"""Compare new reward models with the promoted ones on identical pools; promote the better.

Selection metric: best-of-N accuracy at the largest N, averaged over the evaluation pools --
``prm_best_of_n`` with the configured step aggregation for PRMs, ``orm_best_of_n`` for ORMs.
Both models are scored on the same stored candidates, so the comparison is paired. A new model
is promoted when it scores strictly higher (or nothing is promoted yet); a tie keeps the
incumbent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.best_of_n import pool_candidates, score_pool, usable_ns
from tasks.config import EvalConfig
from tasks.evaluation import evaluate_pool
from tasks.pools import Pool
from tasks.registry import get_model, promote
from tasks.store import Store


@dataclass(frozen=True)
class Decision:
    kind: str
    candidate: str
    incumbent: str | None
    candidate_accuracy: float
    incumbent_accuracy: float | None
    promoted: bool
    reason: str


def selection_accuracy(store: Store, pools: Sequence[Pool], model_id: str, config: EvalConfig, aggregation: str) -> float:
    """Mean over ``pools`` of the model's best-of-N accuracy at the largest N the pool allows."""
    model = get_model(store, model_id)
    kind = model["kind"]
    accuracies = []
    for pool in pools:
        score_pool(store, pool, model, config.score_batch_size)  # cached: usually nothing to score
        keys, problems = pool_candidates(store, pool, model_id if kind == "prm" else None,
                                         model_id if kind == "orm" else None)
        n = usable_ns(config.ns, problems)[-1]
        method = "prm_best_of_n" if kind == "prm" else "orm_best_of_n"
        [result] = [r for r in evaluate_pool(problems, [n], keys, seed=config.seed)
                    if r.method == method and (kind == "orm" or r.aggregation == aggregation)]
        accuracies.append(result.accuracy)
    return math.fsum(accuracies) / len(accuracies)


def decide(store: Store, pools: Sequence[Pool], candidate: str, incumbent: str | None, config: EvalConfig,
           aggregation: str) -> Decision:
    """Promote ``candidate`` if nothing of its kind is promoted or it beats ``incumbent``."""
    kind = get_model(store, candidate)["kind"]
    new = selection_accuracy(store, pools, candidate, config, aggregation)
    if incumbent is None or incumbent == candidate:
        promote(store, candidate)
        return Decision(kind, candidate, incumbent, new, None, True, f"no promoted {kind.upper()} yet")
    old = selection_accuracy(store, pools, incumbent, config, aggregation)
    if new > old:
        promote(store, candidate)
        return Decision(kind, candidate, incumbent, new, old, True, f"better: {new:.3f} > {old:.3f}")
    return Decision(kind, candidate, incumbent, new, old, False, f"not better: {new:.3f} <= {old:.3f}")


@task(name="compare-and-promote", cache_policy=NO_CACHE, task_run_name="promote-{candidate}")
def decide_task(config: EvalConfig, pools: Sequence[Pool], candidate: str, incumbent: str | None,
                aggregation: str) -> Decision:
    with Store(config.db) as store:
        return decide(store, pools, candidate, incumbent, config, aggregation)
