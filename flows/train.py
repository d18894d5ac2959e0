"""The train flow: fine-tune a reward model (PRM or ORM) on the store's labels and register it.

Run it with ``prmf train`` or as a Prefect deployment. The checkpoint is written to a staging
folder and moved into place only when complete; only then is it registered in ``prm_models``
with this run's id.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, runtime

from tasks.config import TrainConfig
from tasks.models import prepare_model
from tasks.runs import recorded_run
from tasks.training import train_task


def _run_name() -> str:
    config = runtime.flow_run.parameters.get("config") or {}
    if isinstance(config, TrainConfig):
        config = config.model_dump()
    return f"train-{config.get('kind', 'prm')}-{config.get('target', 'he')}"


@flow(name="train", flow_run_name=_run_name, log_prints=True)
def train(config: TrainConfig = TrainConfig()) -> dict[str, Any]:
    """Train a reward model from step_estimates (PRM) or solution correctness (ORM)."""
    prepare_model(config.base_model)
    with recorded_run(config.db, "train", config) as run_id:
        return train_task(config, run_id)
