"""The DuckDB store on a real file: migrations, keys, HE/SE derivation, saved queries."""

from __future__ import annotations

import json

import pytest

from tasks.config import DatasetSettings
from tasks.ingest import ingest_problems
from tasks.store import Store, StoreError, content_key, saved_queries
from tests.helpers import seed_store


def test_migrations_apply_once_and_record_versions(db_path):
    with Store(db_path) as store:
        versions = store.query("SELECT version, name FROM schema_migrations ORDER BY version").rows
        assert versions and versions[0] == (1, "001_core")
    with Store(db_path) as store:  # reopening applies nothing new
        assert store.migrate() == []
        tables = {r[0] for r in store.query("SELECT table_name FROM information_schema.tables").rows}
    assert {"problems", "solutions", "steps", "rollouts", "work_units", "runs", "quarantine", "step_estimates"} <= tables


def test_step_estimates_derive_he_and_se_from_rollouts(db_path):
    with Store(db_path) as store:
        seed_store(store, {1: [True, False, False, True], 2: [False, False, False, False]}, False, [True, False, False])
        rows = store.query(
            "SELECT step_index, n, k, he, se, gold, from_final_answer FROM step_estimates ORDER BY step_index"
        ).rows
    assert rows == [
        (1, 4, 2, True, 0.5, True, False),
        (2, 4, 0, False, 0.0, False, False),
        (3, 1, 0, False, 0.0, False, True),  # final step: the solution's own correctness
    ]


def test_a_unit_cannot_be_stored_twice(db_path):
    with Store(db_path) as store:
        seed_store(store, {1: [True, True]}, True, [None, None, None])
        # INSERT OR IGNORE keeps the first copy ...
        assert store.insert_rows("rollouts", [{"rollout_id": "u1:0", "unit_id": "u1", "sample_index": 0,
                                               "solution_id": "s1", "step_index": 1, "text": "dup", "answer": None,
                                               "correct": False, "grade_status": "ok", "num_tokens": 1,
                                               "run_id": "r2"}]) == 0
        # ... and the schema itself refuses a duplicate (unit, sample) under another id.
        with pytest.raises(StoreError, match="[Cc]onstraint"):
            store.query("INSERT INTO rollouts (rollout_id, unit_id, sample_index, solution_id, step_index, text, "
                        "correct, grade_status, num_tokens, run_id) VALUES ('other', 'u1', 1, 's1', 1, 't', true, "
                        "'ok', 1, 'r')")
        assert store.scalar("SELECT count(*) FROM rollouts") == 2


def test_transaction_is_all_or_nothing(db_path):
    with Store(db_path) as store:
        seed_store(store, {}, True, [None, None, None])
        with pytest.raises(RuntimeError):
            with store.transaction() as con:
                store.insert_rows("work_units", [{"unit_id": "u9", "problem_id": "p1", "prefix_hash": "h1",
                                                  "completer_model": "m", "params": "{}", "strategy": "s",
                                                  "budget": 1, "solution_id": "s1", "step_index": 1,
                                                  "run_id": "r"}], con)
                raise RuntimeError("engine died mid-batch")
        assert store.scalar("SELECT count(*) FROM work_units") == 0


def test_quarantine_keeps_good_rows_and_records_bad_ones(db_path, tmp_path):
    source = tmp_path / "problems.jsonl"
    source.write_text(
        "\n".join([
            json.dumps({"question": "1+1?", "answer": "2"}),
            "{not json",
            json.dumps({"question": "2+2?"}),
            json.dumps({"question": "3+3?", "answer": "6"}),
        ]) + "\n"
    )
    settings = DatasetSettings(name="jsonl", path=str(source), answer_kind="numeric")
    with Store(db_path) as store:
        first = ingest_problems(store, settings)
        again = ingest_problems(store, settings)  # re-ingesting stores nothing twice
        bad = store.query("SELECT source, line, reason FROM quarantine ORDER BY line").rows
        datasets = store.query("SELECT DISTINCT dataset FROM problems").rows
    assert (first.loaded, first.new, first.quarantined) == (2, 2, 2)
    assert (again.new, len(bad)) == (0, 2)
    assert [(s, line) for s, line, _ in bad] == [(str(source), 2), (str(source), 3)]
    assert "JSON" in bad[0][2] and "answer" in bad[1][2]
    assert datasets == [("problems",)]


def test_saved_queries_run_on_an_empty_store(db_path):
    with Store(db_path) as store:
        for name in saved_queries():
            assert store.saved_query(name).columns
        with pytest.raises(StoreError, match="no saved query"):
            store.saved_query("nope")


def test_unreadable_database_gives_a_clear_error(tmp_path):
    bad = tmp_path / "garbage.duckdb"
    bad.write_bytes(b"this is not a duckdb file" * 100)
    with pytest.raises(StoreError, match="garbage.duckdb"):
        Store(bad)
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing.duckdb", read_only=True)


def test_content_key_is_stable_and_order_sensitive():
    assert content_key("a", "b") == content_key("a", "b") != content_key("b", "a")
    assert len(content_key("x")) == 24


def test_backup_is_a_whole_consistent_copy(tmp_path):
    from tests.helpers import seed_labelled_arith

    db = tmp_path / "store.duckdb"
    with Store(db) as store:
        seed_labelled_arith(store, 3)
        expected = store.query("SELECT count(*), sum(length(text)) FROM rollouts").rows
        copy = store.backup(tmp_path / "backups" / "copy.duckdb")
        store.query("DELETE FROM quarantine")  # the source stays usable after the copy
        with pytest.raises(StoreError, match="exists"):
            store.backup(copy)
    with Store(copy, read_only=True) as restored:
        assert restored.query("SELECT count(*), sum(length(text)) FROM rollouts").rows == expected
        assert restored.scalar("SELECT count(*) FROM labelled_steps") > 0
    assert not list((tmp_path / "backups").glob("*.partial"))
