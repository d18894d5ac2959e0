"""The retrain flow: train a PRM (and an ORM baseline) -> evaluate -> compare -> promote.

New models are evaluated on the stored candidate pools; the promoted models are scored on the
same candidates, and a new model is promoted only if it beats its incumbent
(``tasks/promotion.py``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, runtime

from flows.evaluate import evaluate
from tasks.artifacts import publish_retrain_task
from tasks.config import FactoryConfig
from tasks.models import prepare_model
from tasks.promotion import decide_task
from tasks.registry import promoted_models_task
from tasks.training import train_task


@flow(name="retrain", flow_run_name="retrain-prm-{config.train.target}", log_prints=True)
def retrain(config: FactoryConfig = FactoryConfig()) -> dict[str, Any]:
    """Train new reward models, evaluate them, promote those that beat the promoted ones."""
    run_id = str(runtime.flow_run.id)
    prepare_model(config.train.base_model)
    incumbents = promoted_models_task(str(config.db))
    kinds = ("prm", "orm") if config.train_orm else ("prm",)
    trained = {kind: train_task(config.train.model_copy(update={"kind": kind}), run_id) for kind in kinds}
    new_ids = {kind: result["model_id"] for kind, result in trained.items()}
    evaluation = evaluate(config.eval.model_copy(update={"prm": new_ids["prm"], "orm": new_ids.get("orm")}))
    decisions = [decide_task(config.eval, evaluation["pools"], new_ids[kind], incumbents.get(kind),
                             config.selection_aggregation) for kind in kinds]
    publish_retrain_task(list(trained.values()), decisions)
    return {"run_id": run_id, "trained": trained, "evaluation": evaluation, "decisions": decisions}
