"""The factory flow: one iteration of the loop -- label, check growth, retrain when due.

``prmf factory`` runs one iteration; a schedule runs it continuously. By default the label stage
takes the next problems not yet labelled (a data cursor), so every iteration adds new data until
the source is exhausted. Retraining is due when the labelled steps since the promoted PRM's data
snapshot reach ``label.retrain_threshold_steps`` (``tasks/growth.py``). With
``retrain_by="flow"`` this run retrains; with ``"automation"`` (the served deployment) the label
run's event starts the ``retrain`` deployment with this run's configuration instead.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.label import label
from flows.retrain import retrain
from tasks.config import FactoryConfig
from tasks.runs import recorded_run


@flow(name="factory", flow_run_name="factory-{config.label.dataset.name}", log_prints=True)
def factory(config: FactoryConfig = FactoryConfig()) -> dict[str, Any]:
    """Label new data; retrain, evaluate and maybe promote once enough of it has arrived."""
    with recorded_run(config.db, "factory", config) as run_id:
        labelled = label(config.label)
        growth = labelled["growth"].growth  # described in the label run's log
        retrained = None
        if growth.due and config.retrain_by == "flow":
            retrained = retrain(config)
        elif growth.due:
            print("the server's retrain-on-growth trigger starts the retrain deployment with this run's configuration")
    return {"run_id": run_id, "label": labelled, "growth": growth, "retrain": retrained}
