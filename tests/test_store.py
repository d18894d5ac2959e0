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


def _unpack(name: str, tmp_path):
    import gzip
    import shutil
    from pathlib import Path

    db = tmp_path / "old.duckdb"
    with gzip.open(Path(__file__).parent / "data" / name) as packed, open(db, "wb") as out:
        shutil.copyfileobj(packed, out)
    return db


def test_a_store_made_by_schema_5_opens_and_keeps_every_row(tmp_path):
    """tests/data/store-v5.duckdb.gz was written by the code of commit cbd4ecf (schema 5; see
    tests/data/make_store_v5.py). Opening it migrates it; nothing stored is lost."""
    db = _unpack("store-v5.duckdb.gz", tmp_path)
    kept = {"problems": 5, "solutions": 6, "steps": 18, "work_units": 12, "rollouts": 48, "runs": 1,
            "retrain_triggers": 1, "eval_pools": 1, "eval_candidates": 2, "prm_models": 1}
    with Store(db) as store:
        assert store.scalar("SELECT max(version) FROM schema_migrations") == 15
        assert {t: store.scalar(f"SELECT count(*) FROM {t}") for t in kept} == kept
        # Later tables and columns exist and start empty; prm_models (rebuilt by 010) takes implicit PRMs.
        assert [store.scalar(f"SELECT count(*) FROM {t}") for t in ("searches", "search_nodes", "search_results")] == [0] * 3
        assert store.scalar("SELECT count(*) FROM eval_results WHERE tokens IS NOT NULL") == 0
        assert store.query("SELECT kind, target FROM prm_models").rows == [("prm", "he")]
        # Its data cost was never recorded: unknown, not zero (011).
        assert store.query("SELECT solution_tokens, rollout_tokens, training_tokens FROM prm_models").rows == [
            (None, None, None)]
        # Old rows read under the new columns' defaults; old runs keep their config and lineage.
        assert store.query("SELECT DISTINCT step_format FROM solutions").rows == [("line",)]
        assert store.query("SELECT flow_name, status, parent_run_id FROM runs").rows == [("label", "completed", None)]
        # The score cache: the file's scores and the old PRM's complete score survive; its score cut
        # short by the old right-truncation (1 score, 2 steps; `last` read the wrong step) is dropped
        # so the next evaluation scores that candidate again.
        assert store.query("SELECT model_id, candidate_index, len(step_scores) FROM eval_scores ORDER BY ALL").rows == [
            ("file", 0, 2), ("file", 1, 1), ("prm-he-old", 1, 1)]
        assert store.scalar("SELECT count(*) FROM labelled_steps") == 18
        for name in saved_queries():
            store.saved_query(name)
        assert store.scalar("SELECT promoted FROM prm_models") is True


def test_a_store_made_by_the_previous_version_opens_and_keeps_every_unit_and_estimate(tmp_path):
    """tests/data/store-v6.duckdb.gz was written by the code of commit 1e6ba68 (schema 6, before
    labelling strategies; see tests/data/make_store_v6.py). Migration 007 rebuilds work_units and
    rollouts (a unit gained its round): every row, key and estimate survives, and the old units
    are the same units the naive strategy would plan now (nothing is labelled twice)."""
    db = _unpack("store-v6.duckdb.gz", tmp_path)
    with Store(db, read_only=True) as old:  # read-only: not migrated
        assert old.scalar("SELECT max(version) FROM schema_migrations") == 6
        units = old.query("SELECT * FROM work_units ORDER BY unit_id").as_dicts()
        rollouts = old.query("SELECT * FROM rollouts ORDER BY rollout_id").rows
        estimates = old.query("SELECT solution_id, step_index, n, k, he, se FROM step_estimates ORDER BY ALL").rows
        old_correct = old.query("SELECT unit_id, correct::INTEGER FROM rollouts").rows
    with Store(db) as store:
        assert store.scalar("SELECT max(version) FROM schema_migrations") == 15
        migrated = store.query("SELECT * FROM work_units ORDER BY unit_id").as_dicts()
        assert [{k: v for k, v in u.items() if k not in ("round", "n", "k")} for u in migrated] == units
        assert {(u["round"], u["n"] == u["budget"]) for u in migrated} == {(0, True)}
        # Migration 014 counted each unit's correct rollouts (here from the old file's rollout rows).
        correct = {u["unit_id"]: 0 for u in units}
        for unit_id, is_correct in old_correct:
            correct[unit_id] += is_correct
        assert {u["unit_id"]: u["k"] for u in migrated} == correct
        assert store.query("SELECT * FROM rollouts ORDER BY rollout_id").rows == rollouts
        assert store.query("SELECT solution_id, step_index, n, k, he, se FROM step_estimates ORDER BY ALL").rows == estimates
        assert store.scalar("SELECT count(*) FROM labelled_steps WHERE inferred") == 0
        # Migration 015 settled the old run's problems as it opened: the estimates above were read
        # settled, and are what its units give (the doctor below checks that too).
        assert store.scalar("SELECT count(*) FROM settled_runs") == 1
        assert store.scalar("SELECT count(*) FROM unsettled_problems") == 0
        assert store.scalar("SELECT count(DISTINCT problem_id) FROM settled_step_estimates") == \
            store.scalar("SELECT count(DISTINCT problem_id) FROM solutions") > 0
        # The schema still refuses a second copy of a unit's rollout.
        with pytest.raises(StoreError, match="[Cc]onstraint"):
            store.query("INSERT INTO rollouts (rollout_id, unit_id, sample_index, solution_id, step_index, text, "
                        "correct, grade_status, num_tokens, run_id) SELECT 'dup', unit_id, sample_index, solution_id, "
                        "step_index, text, correct, grade_status, num_tokens, run_id FROM rollouts LIMIT 1")
        from tasks.doctor import check_store

    assert [c.name for c in check_store(db) if not c.ok] == []


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
                                                  "budget": 1, "n": 1, "k": 0, "round": 0, "solution_id": "s1", "step_index": 1,
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


def test_gold_answers_the_grader_cannot_read_are_quarantined_once_at_ingest(db_path, tmp_path):
    maths = tmp_path / "maths.jsonl"
    maths.write_text("".join(json.dumps(r) + "\n" for r in [
        {"question": "Simplify 1/2 + 1/3.", "answer": "\\frac{5}{6}"},
        # A real MATH-train gold that math-verify reads only as a string: every answer would be "wrong".
        {"question": "Find the probability.", "answer": "\\dfrac{1}{29,\\!322,\\!216}"},
        {"question": "What is 2+2?", "answer": "4"},
    ]))
    numbers = tmp_path / "numbers.jsonl"
    numbers.write_text("".join(json.dumps(r) + "\n" for r in [
        {"question": "How many?", "answer": "about seven"}, {"question": "How many more?", "answer": "7"}]))
    with Store(db_path) as store:
        math_summary = ingest_problems(store, DatasetSettings(name="jsonl", path=str(maths), answer_kind="math"))
        number_summary = ingest_problems(store, DatasetSettings(name="jsonl", path=str(numbers), answer_kind="numeric"))
        again = ingest_problems(store, DatasetSettings(name="jsonl", path=str(maths), answer_kind="math"))
        bad = store.query("SELECT source, line, reason FROM quarantine ORDER BY source, line").rows
        golds = {r[0] for r in store.query("SELECT gold_answer FROM problems").rows}
    assert (math_summary.loaded, math_summary.new, math_summary.quarantined, len(math_summary.problem_ids)) == (3, 2, 1, 2)
    assert (number_summary.new, number_summary.quarantined) == (1, 1)
    assert golds == {"\\frac{5}{6}", "4", "7"}
    assert bad == [
        (str(maths), 2, "unparseable gold answer: math-verify reads '\\\\dfrac{1}{29,\\\\!322,\\\\!216}' only as text"),
        (str(numbers), 1, "unparseable gold answer: 'about seven' is not a number"),
    ]
    assert again.new == 0 and len(again.problem_ids) == 2  # the valid problems, once


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


def test_a_read_only_open_of_a_store_with_an_older_versions_views_runs_this_versions_saved_queries(tmp_path):
    """`prmf query` opens read-only and cannot rewrite views: a store last written by the version
    before step_advantages_for_ks still answers advantages_vs_gold, as the migrated store does."""
    from tests.helpers import seed_labelled_arith

    db = tmp_path / "older.duckdb"
    with Store(db) as store:
        seed_labelled_arith(store, 3)
        # What the previous version left: no step_advantages_for_ks, its own step_advantages.
        store.con.execute("DROP MACRO TABLE step_advantages")
        store.con.execute("DROP MACRO TABLE step_advantages_for_ks")
        store.con.execute("CREATE MACRO step_advantages(alpha := 0.5, k := 4) AS TABLE SELECT 'stale' AS solution_id")
    with Store(db, read_only=True) as store:
        read_only = store.saved_query("advantages_vs_gold").rows
        assert store.scalar("SELECT count(*) FROM step_advantages() WHERE solution_id = 'stale'") == 0
    with Store(db) as store:  # a writable open rewrites the stored views and macros
        assert store.saved_query("advantages_vs_gold").rows == read_only
    assert {row[0] for row in read_only} == {"bo2", "bo4", "bo8"}
