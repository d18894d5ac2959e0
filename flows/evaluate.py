"""The evaluate flow: candidate pools -> reward-model scores -> best-of-N accuracies + diagnostics
(-> with ``methods: [beam]``, verifier-guided beam search on the test pools, compared at equal
generated tokens).

Run it with ``prmf eval`` or as a Prefect deployment. Pools are sampled once per dataset and
reused; each model scores a candidate once. Test pools (``datasets``) are reported; validation
pools (``validation``) are what the retrain flow decides promotion on. Results and scorer
diagnostics land in ``eval_results`` / ``eval_diagnostics`` and in the run's artifacts (a table
per pool and the accuracy-vs-N plot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, runtime

from tasks.artifacts import publish_evaluation_task
from tasks.best_of_n import evaluate_pool_task, import_pool_task, prepare_pool_task
from tasks.config import EvalConfig
from tasks.models import prepare_model
from tasks.runs import recorded_run
from tasks.search.runner import beam_search_task


def _run_name() -> str:
    params = runtime.flow_run.parameters
    if params.get("pool_file"):
        return f"evaluate-file-{Path(str(params['pool_file'])).stem}"
    config = params.get("config") or {}
    if isinstance(config, EvalConfig):
        config = config.model_dump()
    names = "-".join(d.get("name", "?") for d in config.get("datasets") or [{"name": "arith"}])
    return f"evaluate-{names}-n{config.get('n_max', 8)}"


@flow(name="evaluate", flow_run_name=_run_name, log_prints=True)
def evaluate(config: EvalConfig = EvalConfig(), pool_file: Path | None = None) -> dict[str, Any]:
    """Best-of-N accuracy of the PRM and ORM (and score-free baselines) at N = 1, 2, 4, ... n_max;
    with ``beam`` in ``config.methods`` also beam search at each configured width."""
    with recorded_run(config.db, "evaluate", config) as run_id:
        if pool_file is not None:
            pools, validation = [import_pool_task(config, run_id, pool_file)], []
        else:
            prepare_model(config.generator.model)
            pools = [prepare_pool_task(config, run_id, settings) for settings in config.datasets]
            validation = [prepare_pool_task(config, run_id, settings) for settings in config.validation]
        evaluations = [evaluate_pool_task(config, pool, run_id) for pool in [*validation, *pools]]
        if "beam" in config.methods and pool_file is None:  # searches need the problems, not a file's answers
            tested = evaluations[len(validation):]
            evaluations[len(validation):] = [beam_search_task(config, pool, e, run_id) for pool, e in zip(pools, tested)]
        # the tables and the plots (written next to config.plot)
        publish_evaluation_task(evaluations, config.plot, config.beam.select)
    return {"run_id": run_id, "pools": pools, "validation_pools": validation, "evaluations": evaluations}
