"""The processbench flow: earliest-error detection by a PRM on ProcessBench (gsm8k | math).

Run it with ``prmf processbench`` or as a Prefect deployment; each run is a
``processbench_results`` row under its flow run id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, runtime

from tasks.config import default_db_path
from tasks.processbench import processbench_task


@flow(name="processbench", flow_run_name="processbench-{split}", log_prints=True)
def processbench(split: str = "gsm8k", model_id: str | None = None, limit: int | None = None,
                 threshold: float | None = None, db: Path | None = None) -> dict[str, Any]:
    """Score every step, predict the first one below the threshold (chosen on gsm8k unless given), report F1."""
    return processbench_task(db or default_db_path(), split, model_id, limit, threshold, str(runtime.flow_run.id))
