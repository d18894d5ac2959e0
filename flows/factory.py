"""The factory flow: one iteration of the loop -- label, check growth, retrain when due.

``prmf factory`` runs one iteration; a schedule runs it continuously. Retraining is due when the
labelled steps since the promoted PRM's data snapshot reach ``label.retrain_threshold_steps``
(``tasks/growth.py``). With ``retrain_by="flow"`` this run retrains; with ``"automation"`` (the
served deployment) the label run's event starts the ``retrain`` deployment instead.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, runtime

from flows.label import label
from flows.retrain import retrain
from tasks.config import FactoryConfig


@flow(name="factory", flow_run_name="factory-{config.label.dataset.name}", log_prints=True)
def factory(config: FactoryConfig = FactoryConfig()) -> dict[str, Any]:
    """Label new data; retrain, evaluate and maybe promote once enough of it has arrived."""
    labelled = label(config.label)
    growth = labelled["growth"].growth  # described in the label run's log
    retrained = None
    if growth.due and config.retrain_by == "flow":
        retrained = retrain(config)
    elif growth.due:
        print("the server's retrain-on-growth trigger starts the retrain deployment")
    return {"run_id": str(runtime.flow_run.id), "label": labelled, "growth": growth, "retrain": retrained}
