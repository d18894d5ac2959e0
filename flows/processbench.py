"""The processbench flow: earliest-error detection by a PRM on ProcessBench (gsm8k | math).

Run it with ``prmf processbench`` or as a Prefect deployment; each run is a
``processbench_results`` row and a ``runs`` row under its flow run id.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.config import ProcessBenchConfig
from tasks.processbench import processbench_task
from tasks.runs import recorded_run
from tasks.verifiers import ScoringSettings


@flow(name="processbench", flow_run_name="processbench-{config.split}", log_prints=True)
def processbench(config: ProcessBenchConfig = ProcessBenchConfig()) -> dict[str, Any]:
    """Score every step, predict the first one below the threshold (chosen on gsm8k unless given), report F1."""
    with recorded_run(config.db, "processbench", config) as run_id:
        scoring = ScoringSettings(batch_size=config.batch_size, batch_tokens=config.batch_tokens)
        result = processbench_task(config.db, config.split, config.model, config.limit, config.threshold, run_id,
                                   scoring)
    return {"run_id": run_id, **result}
