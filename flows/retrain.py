"""The retrain flow: train a PRM (an ORM baseline, an implicit PRM) -> evaluate -> decide on validation -> promote.

New models are evaluated on the stored candidate pools; promotion is decided on the validation
pools only, by a paired test against the promoted model (a first model: against majority vote),
and every decision is stored with its evidence (``tasks/promotion.py``). Test pools are reported.
An implicit PRM (``train_implicit``) fills the PRM slot of a second evaluation of the same pools
and competes with the promoted implicit PRM: one promoted model per kind.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.evaluate import evaluate
from tasks.artifacts import publish_retrain_task
from tasks.config import FactoryConfig, TrainConfig
from tasks.models import prepare_model
from tasks.promotion import decide_task
from tasks.registry import promoted_models_task
from tasks.runs import recorded_run
from tasks.training import train_task


@flow(name="retrain", flow_run_name="retrain-prm-{config.train.target}", log_prints=True)
def retrain(config: FactoryConfig = FactoryConfig()) -> dict[str, Any]:
    """Train new reward models, evaluate them, promote those that beat the promoted ones on validation."""
    prepare_model(config.train.base_model)
    with recorded_run(config.db, "retrain", config) as run_id:
        incumbents = promoted_models_task(str(config.db))
        kinds = ["prm", *(["orm"] if config.train_orm else []), *(["implicit"] if config.train_implicit else [])]
        trained = {kind: train_task(training_config(config, kind), run_id) for kind in kinds}
        new_ids = {kind: result["model_id"] for kind, result in trained.items()}
        evaluation = evaluate(config.eval.model_copy(update={"prm": new_ids["prm"], "orm": new_ids.get("orm")}))
        implicit_evaluation = (evaluate(config.eval.model_copy(update={"prm": new_ids["implicit"], "orm": "none"}))
                               if "implicit" in new_ids else None)
        decisions = [decide_task(config, evaluation["validation_pools"], new_ids[kind], incumbents.get(kind), run_id)
                     for kind in kinds]
        for decision in decisions:
            print(f"{decision.kind.upper()} {decision.candidate}: {decision.reason}")  # the run's log in the UI
        publish_retrain_task(list(trained.values()), decisions)
    return {"run_id": run_id, "trained": trained, "evaluation": evaluation,
            "implicit_evaluation": implicit_evaluation, "decisions": decisions}


def training_config(config: FactoryConfig, kind: str) -> TrainConfig:
    """The factory's training settings for one kind. An implicit PRM trains on solution correctness,
    so the step-target settings of the PRM do not carry over to it."""
    if kind == "implicit":
        return config.train.model_copy(update={"kind": kind, "target": "he", "class_balance": False})
    return config.train.model_copy(update={"kind": kind})
