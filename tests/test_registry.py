"""The growth trigger and promotion on a real DuckDB file with really trained models."""

from __future__ import annotations

import json
import shutil

import pytest

from tasks.config import EvalConfig
from tasks.pools import import_external_pool
from tasks.promotion import decide, selection_accuracy
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


def _second_prm(store: Store, source_id: str, new_id: str) -> None:
    """Register the same checkpoint under another id (a second version to compare with)."""
    store.query("INSERT INTO prm_models SELECT ? AS model_id, * EXCLUDE (model_id) FROM prm_models WHERE model_id = ?",
                [new_id, source_id])


def test_promotion_is_paired_and_strict(store, trained_models, tmp_path):
    pool_file = tmp_path / "pool.jsonl"
    pool_file.write_text("\n".join(json.dumps(r) for r in [
        {"question": "What is 2 + 3?", "answer": "5", "responses": ["2 + 3 = 5\nThe answer is 5.", "2 + 3 = 6\nThe answer is 6."],
         "correct": [True, False]},
        {"question": "What is 7 - 4?", "answer": "3", "responses": ["7 - 4 = 2\nThe answer is 2.", "7 - 4 = 3\nThe answer is 3."],
         "correct": [False, True]},
    ]) + "\n")
    config = EvalConfig(db=store.path, n_max=2)
    pool = import_external_pool(store, pool_file, config, "test")
    prm = trained_models["prm"].model_id

    first = decide(store, [pool], prm, None, config, "min")
    assert first.promoted and first.reason.startswith("no promoted")

    # The same checkpoint under a new id scores identically: a tie keeps the incumbent.
    _second_prm(store, prm, "prm-same")
    tie = decide(store, [pool], "prm-same", prm, config, "min")
    assert not tie.promoted and tie.candidate_accuracy == tie.incumbent_accuracy
    assert promoted_model(store)["model_id"] == prm

    # A version whose stored scores pick the right candidate of both problems is promoted.
    _second_prm(store, prm, "prm-better")
    store.insert_rows("eval_scores", [
        {"model_id": "prm-better", "pool_id": pool.pool_id, "problem_id": pid, "candidate_index": i,
         "step_scores": [0.9, 0.9] if correct else [0.9, 0.1]}
        for pid, i, correct in store.query("SELECT problem_id, candidate_index, correct FROM eval_candidates "
                                           "WHERE pool_id = ?", [pool.pool_id]).rows
    ])
    assert selection_accuracy(store, [pool], "prm-better", config, "min") == 1.0
    better = decide(store, [pool], "prm-better", prm, config, "min")
    expected_old = selection_accuracy(store, [pool], prm, config, "min")
    assert better.incumbent_accuracy == expected_old
    assert better.promoted == (expected_old < 1.0)
    if better.promoted:
        assert promoted_model(store)["model_id"] == "prm-better"
