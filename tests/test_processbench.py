"""ProcessBench evaluation with the session's really trained PRM on a copy of its store."""

from __future__ import annotations

import json
import shutil

import pytest

from tasks.datasets import data_dir
from tasks.evaluation import choose_threshold, earliest_error, processbench_f1
from tasks.processbench import load_processbench, pick_threshold, predictions, processbench_task, run_processbench
from tasks.registry import RegistryError
from tasks.store import Store
from tasks.verifiers import ScoringSettings, SolutionScores, load_verifier

LIMIT = 4
SCORING = ScoringSettings(batch_size=4)
METRICS = ("error_accuracy", "correct_accuracy", "f1")


@pytest.fixture
def store_copy(trained_models, tmp_path):
    db = tmp_path / "store.duckdb"
    shutil.copy(trained_models["db"], db)
    return db


@pytest.fixture(scope="module")
def independent(trained_models):
    """Samples and per-step score lists of both splits straight from the reward model, in the same
    order and batches as the evaluation (so the numbers match exactly), and the SolutionScores."""
    model = load_verifier(trained_models["prm"].path, SCORING)
    out = {}
    for split in ("gsm8k", "math"):
        samples = load_processbench(split, LIMIT)
        scored = model.score_many([(s.question, list(s.steps)) for s in samples])
        # These samples fit in the model's context: every step has a score.
        assert not any(s.truncated for s in scored)
        assert [len(s.step_scores) for s in scored] == [len(s.steps) for s in samples]
        out[split] = (samples, [list(s.step_scores) for s in scored], scored)
    return out


def _raw(split):
    return json.loads((data_dir() / "processbench" / f"{split}.json").read_text())


def _rows(db):
    with Store(db) as store:
        return store.query("SELECT * FROM processbench_results ORDER BY created_at").as_dicts()


def test_load_processbench_validates_and_keeps_both_classes():
    with pytest.raises(ValueError, match="gsm8k, math"):
        load_processbench("olympiadbench")
    with pytest.raises(ValueError, match="at least 2"):
        load_processbench("gsm8k", limit=1)

    for split, size in (("gsm8k", 400), ("math", 1000)):
        everything = load_processbench(split)
        assert len(everything) == size
        assert [s.id for s in everything] == [row["id"] for row in _raw(split)]
        assert all(s.label == -1 or 0 <= s.label < len(s.steps) for s in everything)

    raw = _raw("math")
    order = {row["id"]: i for i, row in enumerate(raw)}
    for limit in (2, 3, LIMIT, 11):
        subset = load_processbench("math", limit)
        labels = [s.label for s in subset]
        assert len(subset) == limit
        assert -1 in labels and any(label != -1 for label in labels)
        assert sum(label == -1 for label in labels) == limit // 2  # alternating, erroneous first
        positions = [order[s.id] for s in subset]
        assert positions == sorted(positions)  # file order
        # Deterministic and nested.
        assert subset == load_processbench("math", limit)
        if limit > 2:
            assert {s.id for s in load_processbench("math", limit - 1)} <= {s.id for s in subset}
    first_erroneous = next(row for row in raw if row["label"] != -1)
    first_correct = next(row for row in raw if row["label"] == -1)
    assert {s.id for s in load_processbench("math", 2)} == {first_erroneous["id"], first_correct["id"]}
    sample = next(s for s in load_processbench("math", 2) if s.id == first_erroneous["id"])
    assert sample.question == first_erroneous["problem"] and sample.steps == tuple(first_erroneous["steps"])


def test_math_uses_a_threshold_chosen_on_gsm8k(trained_models, store_copy, independent):
    prm = trained_models["prm"]
    with Store(store_copy) as store:
        result = run_processbench(store, "math", limit=LIMIT, run_id="pb-test", scoring=SCORING)

    (gsm8k, gsm8k_scores, _), (math_samples, math_scores, _) = independent["gsm8k"], independent["math"]
    threshold, _ = choose_threshold(gsm8k_scores, [s.label for s in gsm8k])
    expected = processbench_f1([earliest_error(s, threshold) for s in math_scores], [s.label for s in math_samples])

    assert result["model_id"] == prm.model_id
    assert result["split"] == "math" and result["samples"] == LIMIT
    assert result["threshold_source"] == "gsm8k" and result["threshold"] == threshold
    assert {k: result[k] for k in expected} == pytest.approx(expected)
    assert result["error_samples"] + result["correct_samples"] == LIMIT

    rows = _rows(store_copy)
    assert len(rows) == 1
    row = rows[0]
    assert (row["run_id"], row["model_id"], row["split"], row["samples"]) == ("pb-test", prm.model_id, "math", LIMIT)
    assert row["threshold_source"] == "gsm8k" and row["threshold"] == pytest.approx(threshold)
    assert {k: row[k] for k in METRICS} == pytest.approx({k: expected[k] for k in METRICS})


def test_given_threshold_is_used(trained_models, store_copy, independent):
    prm = trained_models["prm"]
    samples, scores, scored = independent["gsm8k"]
    labels = [s.label for s in samples]
    # The median step score: a threshold that splits this model's scores, so the check has teeth.
    given = sorted(x for s in scores for x in s)[len([x for s in scores for x in s]) // 2]
    expected = processbench_f1([earliest_error(s, given) for s in scores], labels)
    assert predictions(scored, given) == [earliest_error(s, given) for s in scores]

    result = processbench_task.fn(store_copy, "gsm8k", model_id=prm.model_id, limit=LIMIT, threshold=given,
                                  run_id="pb-given", scoring=SCORING)
    assert result["threshold_source"] == "given" and result["threshold"] == given
    assert {k: result[k] for k in expected} == pytest.approx(expected)
    rows = _rows(store_copy)
    assert len(rows) == 1 and rows[0]["run_id"] == "pb-given" and rows[0]["threshold_source"] == "given"
    assert rows[0]["threshold"] == pytest.approx(given) and rows[0]["split"] == "gsm8k"
    assert {k: rows[0][k] for k in METRICS} == pytest.approx({k: expected[k] for k in METRICS})


def test_bad_requests_store_nothing(trained_models, store_copy):
    with Store(store_copy) as store:
        with pytest.raises(ValueError, match="expected one of"):
            run_processbench(store, "aime", limit=LIMIT)
        with pytest.raises(RegistryError, match="is an ORM, not a PRM"):
            run_processbench(store, "gsm8k", model_id=trained_models["orm"].model_id, limit=LIMIT, threshold=0.5)
        with pytest.raises(RegistryError, match="no model"):
            run_processbench(store, "gsm8k", model_id="prm-missing", limit=LIMIT)
    assert _rows(store_copy) == []


def test_unscored_steps_are_never_flagged_nor_threshold_candidates():
    # Leading None entries: steps dropped because the sample did not fit in the model's context.
    truncated = SolutionScores((None, 0.2, 0.9), True)
    assert predictions([truncated, SolutionScores((None, None, 0.9), True), SolutionScores((0.9, 0.3))], 0.5) == [1, -1, 1]
    assert predictions([truncated], 0.1) == [-1]

    # The first sample's error is in an unscored step: it can never be found. The best thresholds
    # find the third sample's error and pass the correct second one: (0.1, 0.6]; ties go low, and
    # the lowest candidate there is 0.15 from the grid (no None/inf candidate).
    samples = [SolutionScores((None, 0.8), True), SolutionScores((0.6, 0.7)), SolutionScores((0.9, 0.1))]
    labels = [0, -1, 1]
    threshold = pick_threshold(samples, labels)
    assert threshold == pytest.approx(0.15)
    assert predictions(samples, threshold) == [-1, -1, 1]
    assert processbench_f1(predictions(samples, threshold), labels)["error_accuracy"] == 0.5
    # The real scores are candidates too: only (0.12, 0.13] is best now, and no grid value is in it.
    samples[1:] = [SolutionScores((0.13, 0.7)), SolutionScores((0.9, 0.12))]
    assert pick_threshold(samples, labels) == pytest.approx(0.13)
