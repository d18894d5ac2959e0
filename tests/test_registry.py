"""The growth trigger and promotion on a real DuckDB file with really trained models."""

from __future__ import annotations

import json
import shutil

import pytest

from tasks.config import FactoryConfig
from tasks.pools import import_external_pool
from tasks.promotion import decide
from tasks.growth import claim_retrain, growth
from tasks.registry import RegistryError, get_model, label_snapshot, promote, promoted_model
from tasks.store import Store
from tests.helpers import seed_labelled_arith


@pytest.fixture
def store(trained_models, tmp_path):
    db = tmp_path / "store.duckdb"
    shutil.copy(trained_models["db"], db)
    with Store(db) as store:
        yield store


def steps_per_problem(store: Store) -> int:
    return store.scalar("SELECT count(*) FROM labelled_steps") // store.scalar("SELECT count(DISTINCT problem_id) FROM labelled_steps")


def test_growth_fires_exactly_when_the_threshold_is_reached(store, trained_models):
    prm = trained_models["prm"].model_id
    labelled = store.scalar("SELECT count(*) FROM labelled_steps WHERE split <> 'test'")
    assert labelled > 0
    # Nothing promoted: every labelled step is new.
    assert growth(store, labelled).due and not growth(store, labelled + 1).due

    promote(store, prm)
    assert growth(store, 1).new_steps == 0 and growth(store, 1).baseline_model == prm

    seed_labelled_arith(store, 3, start=100)  # three new problems, fully labelled
    added = store.scalar("SELECT count(*) FROM labelled_steps WHERE split <> 'test'") - labelled
    assert added > 0
    assert growth(store, added).new_steps == added
    assert growth(store, added).due          # exactly at the threshold: retrain
    assert not growth(store, added + 1).due  # one step short: not yet

    seed_labelled_arith(store, 2, split="test", start=100)  # evaluation problems do not count
    assert growth(store, added).new_steps == added


def test_a_crossing_triggers_one_retrain_and_the_next_needs_another_threshold(store, trained_models):
    labelled = store.scalar("SELECT count(*) FROM labelled_steps WHERE split <> 'test'")
    threshold = labelled - 1
    assert not claim_retrain(store, labelled + 1, "run-below", "arith").due  # below: no trigger
    first = claim_retrain(store, threshold, "run-crossing", "arith")
    assert first.due and first.last_trigger_steps is None
    # Later label runs before any promotion: the crossing is taken, no second retrain.
    again = claim_retrain(store, threshold, "run-after", "arith")
    assert not again.due and again.new_steps >= threshold and again.last_trigger_steps == labelled
    assert store.query("SELECT run_id, baseline_model, labelled_steps, new_steps, threshold FROM retrain_triggers").rows == [
        ("run-crossing", None, labelled, labelled, threshold)]

    # Another threshold of steps with the incumbent still promoted: due again.
    seed_labelled_arith(store, threshold // 4 + 1, start=200)  # >= 4 steps per problem (2 solutions)
    grown = store.scalar("SELECT count(*) FROM labelled_steps WHERE split <> 'test'")
    assert grown - labelled >= threshold
    assert claim_retrain(store, threshold, "run-second", "arith").due

    # A promotion moves the baseline: growth restarts from its snapshot (recorded at `labelled`).
    promote(store, trained_models["prm"].model_id)
    after = claim_retrain(store, grown - labelled, "run-promoted", "arith")
    assert after.baseline_model == trained_models["prm"].model_id and after.new_steps == grown - labelled
    assert after.due and after.last_trigger_steps is None  # triggers of the old baseline do not count


def test_snapshot_recorded_with_the_model_matches_the_growth_measure(store, trained_models):
    snapshot = json.loads(get_model(store, trained_models["prm"].model_id)["data_snapshot"])
    assert snapshot["labelled_steps"] == label_snapshot(store)["labelled_steps"]


def test_model_lookup(store, trained_models):
    assert get_model(store, None, "orm")["model_id"] == trained_models["orm"].model_id
    with pytest.raises(RegistryError, match="no model 'nope'"):
        get_model(store, "nope")
    promote(store, trained_models["prm"].model_id)
    promote(store, trained_models["orm"].model_id)  # one promoted model per kind
    assert promoted_model(store, "prm")["model_id"] == trained_models["prm"].model_id
    assert store.scalar("SELECT count(*) FROM prm_models WHERE promoted") == 2


def _register_copy(store: Store, source_id: str, new_id: str, kind: str | None = None) -> None:
    """Register the same checkpoint under another id (a version whose scores a test then sets),
    as another kind when ``kind`` is given."""
    store.query("INSERT INTO prm_models BY NAME SELECT * REPLACE (? AS model_id, coalesce(?, kind) AS kind, "
                "false AS promoted) FROM prm_models WHERE model_id = ?", [new_id, kind, source_id])


def majority_wrong_pool(tmp_path, addend: int):
    """A validation pool file of 10 problems "What is a + addend?" where majority vote is always
    wrong: two candidates agree on a wrong answer, the third is right (correctness given, so
    nothing is graded). Each candidate has two steps."""
    pool_file = tmp_path / "validation.jsonl"
    pool_file.write_text("\n".join(json.dumps({
        "question": f"What is {a} + {addend}?", "answer": str(a + addend), "correct": [False, False, True],
        "responses": [f"{a} + {addend} = {a + addend + 1}\nThe answer is {a + addend + 1}.",
                      f"{a} + {addend} = {a + addend + 1}\nThe answer is {a + addend + 1}.",
                      f"{a} + {addend} = {a + addend}\nThe answer is {a + addend}."]}) for a in range(10)) + "\n")
    return pool_file


def _set_scores(store: Store, pool, model_id: str, pick_right: bool) -> None:
    """Stored scores that make ``model_id`` pick the right (or a wrong) candidate of every problem."""
    store.insert_rows("eval_scores", [
        {"model_id": model_id, "pool_id": pool.pool_id, "problem_id": pid, "candidate_index": i,
         "step_scores": [0.9] if correct == pick_right else [0.1]}
        for pid, i, correct in store.query("SELECT problem_id, candidate_index, correct FROM eval_candidates "
                                           "WHERE pool_id = ?", [pool.pool_id]).rows
    ])


def test_promotion_needs_a_paired_win_on_validation(store, trained_models, tmp_path):
    pool_file = majority_wrong_pool(tmp_path, 5)
    config = FactoryConfig(db=store.path, eval={"n_max": 3}, promotion_confidence=0.95)
    pool = import_external_pool(store, pool_file, config.eval, "test")
    base = trained_models["prm"].model_id
    for model_id, right in (("prm-wrong", False), ("prm-right", True), ("prm-same", True), ("prm-worse", False)):
        _register_copy(store, base, model_id)
        _set_scores(store, pool, model_id, right)

    # A first model must beat majority vote (0/10 here). Picking wrong everywhere ties it: 0 - 0.
    tie = decide(store, [pool], "prm-wrong", None, config, "run-1")
    assert (tie.baseline, tie.candidate_accuracy, tie.baseline_accuracy, tie.difference) == ("majority", 0, 0, 0)
    assert not tie.promoted and tie.reason.startswith("registered, not promoted: not better than majority vote")
    assert promoted_model(store) is None
    # Picking right everywhere: +1 on every problem, so every resample's gain is 1 and the bound is 1.
    win = decide(store, [pool], "prm-right", None, config, "run-1")
    assert (win.candidate_accuracy, win.difference, win.ci_low, win.p_better) == (1, 1, 1, 1)
    assert win.promoted and win.n == 3 and win.problems == 10
    assert promoted_model(store)["model_id"] == "prm-right"
    # Against the incumbent: identical choices are no evidence; worse choices lose by 1 everywhere.
    same = decide(store, [pool], "prm-same", "prm-right", config, "run-2")
    assert same.baseline == "prm-right" and same.difference == 0 and not same.promoted
    worse = decide(store, [pool], "prm-worse", "prm-right", config, "run-2")
    assert worse.difference == -1 and worse.reason.startswith("registered, not promoted: worse than the promoted")
    assert promoted_model(store)["model_id"] == "prm-right"

    # Every decision is stored with its evidence.
    rows = store.query("SELECT run_id, candidate, baseline, promoted, round(difference, 3), pool_ids "
                       "FROM promotion_decisions ORDER BY created_at, candidate").rows
    assert [r[:5] for r in rows] == [("run-1", "prm-wrong", "majority", False, 0), ("run-1", "prm-right", "majority", True, 1),
                                     ("run-2", "prm-same", "prm-right", False, 0),
                                     ("run-2", "prm-worse", "prm-right", False, -1)]
    assert json.loads(rows[0][5]) == [pool.pool_id]


def test_an_implicit_prm_is_judged_on_its_configured_readout_and_promoted_in_its_own_slot(store, trained_models, tmp_path):
    pool_file = majority_wrong_pool(tmp_path, 7)
    config = FactoryConfig(db=store.path, eval={"n_max": 3, "implicit_readout": "cumulative"}, promotion_confidence=0.95)
    pool = import_external_pool(store, pool_file, config.eval, "test")
    promote(store, trained_models["prm"].model_id)
    _register_copy(store, trained_models["prm"].model_id, "implicit-1", kind="implicit")
    # Stored step rewards r_t. Right: [2, -1] (q_t = 2, 1: min 1); wrong: [0.5, 0] (q_t = 0.5, 0.5: min 0.5).
    # Read as q_t (cumulative), min picks the right one; read as r_t (step), min would pick a wrong one (0 > -1).
    store.insert_rows("eval_scores", [
        {"model_id": "implicit-1", "pool_id": pool.pool_id, "problem_id": pid, "candidate_index": i,
         "step_scores": [2.0, -1.0] if correct else [0.5, 0.0]}
        for pid, i, correct in store.query("SELECT problem_id, candidate_index, correct FROM eval_candidates "
                                           "WHERE pool_id = ?", [pool.pool_id]).rows
    ])
    won = decide(store, [pool], "implicit-1", None, config, "run-1")
    assert (won.kind, won.method, won.aggregation, won.baseline) == ("implicit", "prm_best_of_n", "min", "majority")
    assert (won.candidate_accuracy, won.baseline_accuracy, won.difference) == (1, 0, 1) and won.promoted
    assert promoted_model(store, "implicit")["model_id"] == "implicit-1"
    assert promoted_model(store, "prm")["model_id"] == trained_models["prm"].model_id  # its own slot: the PRM stays
    # The same stored rewards read per step pick a wrong answer everywhere: no better than majority vote.
    lost = decide(store, [pool], "implicit-1", None, config.model_copy(
        update={"eval": config.eval.model_copy(update={"implicit_readout": "step"})}), "run-2")
    assert (lost.candidate_accuracy, lost.difference, lost.promoted) == (0, 0, False)


def test_promotion_refuses_test_pools(store, trained_models, tmp_path):
    from tasks.pools import Pool
    from tasks.store import StoreError

    config = FactoryConfig(db=store.path)
    with pytest.raises(StoreError, match="decided on validation pools, got the test pool arith/test"):
        decide(store, [Pool("p", "arith", "test", ("x",))], trained_models["prm"].model_id, None, config, "r")
    with pytest.raises(ValueError, match="is a test split"):
        FactoryConfig(eval={"validation": [{"name": "gsm8k", "split": "test"}]})
    with pytest.raises(ValueError, match="eval.validation is empty"):  # caught before any training starts
        FactoryConfig(eval={"validation": []})


def test_a_triggered_retrain_gets_the_configuration_of_the_factory_run_that_labelled(store, tmp_path):
    from tasks.growth import retrain_config

    def record(run_id, flow_name, config, parent=None):
        store.start_run({"run_id": run_id, "flow_name": flow_name, "config": json.dumps(config),
                         "parent_run_id": parent, "host": "elsewhere"})

    db = str(store.path.resolve())
    assert retrain_config(store, "no-such-run") == (FactoryConfig(db=db).public_dump(),
                                                    "defaults (no factory run on this store)")
    mine = FactoryConfig(db="relative.duckdb", train={"epochs": 7}, promotion_confidence=0.8).public_dump()
    record("factory-1", "factory", mine)
    record("label-1", "label", {}, parent="factory-1")
    record("factory-2", "factory", FactoryConfig(train={"epochs": 3}).public_dump())  # newer, not the parent
    config, source = retrain_config(store, "label-1")
    assert source == "factory run factory-1"
    assert FactoryConfig.model_validate(config) == FactoryConfig.model_validate({**mine, "db": db} | {
        stage: {**mine[stage], "db": db} for stage in ("label", "train", "eval")})  # the store that grew
    assert retrain_config(store, "label-without-parent")[1] == "factory run factory-2"  # the newest factory run
    record("factory-3", "factory", {"retrain_threshold_steps": 5})  # written by an older version
    config, source = retrain_config(store, "label-without-parent")
    assert config == FactoryConfig(db=db).public_dump()
    assert source.startswith("defaults (factory run factory-3's config is invalid: retrain_threshold_steps")
