"""The factory flow: one iteration of the loop -- label, check growth, retrain when due.

``prmf factory`` runs one iteration; a schedule runs it continuously. Retraining starts when
the labelled steps since the promoted PRM's data snapshot reach ``retrain_threshold_steps``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, runtime

from flows.label import label
from flows.retrain import retrain
from tasks.config import FactoryConfig
from tasks.registry import growth_task


@flow(name="factory", flow_run_name="factory-{config.label.dataset.name}", log_prints=True)
def factory(config: FactoryConfig = FactoryConfig()) -> dict[str, Any]:
    """Label new data; retrain, evaluate and maybe promote once enough of it has arrived."""
    labelled = label(config.label)
    growth = growth_task(str(config.db), config.retrain_threshold_steps)
    print(f"labelled steps: {growth.labelled_steps}, {growth.new_steps} new since "
          f"{growth.baseline_model or 'the start (no promoted PRM)'}; threshold {growth.threshold}: "
          f"{'retraining' if growth.due else 'not yet'}")
    retrained = retrain(config) if growth.due else None
    return {"run_id": str(runtime.flow_run.id), "label": labelled, "growth": growth, "retrain": retrained}
