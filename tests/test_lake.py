"""DuckLake stores on a real PostgreSQL catalog (started by the test on 127.0.0.1): the same
tables, views and saved queries as a DuckDB file, keys kept without constraints, insert-only
work leases, `prmf migrate-store` both ways with every row accounted for, and the doctor."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tasks.lake import _referenced_first, redact
from tasks.leases import claim, claimed_batches, release
from tasks.postgres import temporary_postgres
from tasks.store import Store, saved_queries
from tests.helpers import run_label_processes_at_once, seed_labelled_arith


@pytest.fixture(scope="module")
def postgres():
    with temporary_postgres() as server:
        yield server


@pytest.fixture
def lake(postgres, tmp_path, monkeypatch, request):
    monkeypatch.setenv("PRMF_LAKE_DATA_PATH", str(tmp_path / "lake-data"))
    return postgres.create_database(request.node.name.lower().replace("[", "_").replace("]", "")[:60])


def test_tables_come_after_the_tables_their_foreign_keys_reference():
    order = _referenced_first({"steps": {"solutions"}, "solutions": {"problems", "generations"},
                               "generations": {"problems"}, "problems": set(), "runs": {"runs"}})
    assert order == ["problems", "runs", "generations", "solutions", "steps"]


def test_a_password_never_appears_in_messages():
    assert redact("ducklake:postgres:dbname=x password=hunter2 host=h") == "ducklake:postgres:dbname=x password=*** host=h"


def test_a_new_lake_has_every_table_and_keeps_keys_without_constraints(lake):
    problem = {"problem_id": "p1", "dataset": "arith", "split": "train", "source": "t", "source_row": 1,
               "question": "q", "gold_answer": "6", "answer_kind": "numeric"}
    with Store(lake) as store:
        assert store.lake
        assert store.scalar("SELECT max(version) FROM schema_migrations") == 15
        # The batch repeats p1 and the store already has it after the first insert: one row each.
        assert store.insert_rows("problems", [problem, problem, {**problem, "problem_id": "p2"}]) == 2
        assert store.insert_rows("problems", [problem, {**problem, "problem_id": "p3"}]) == 1
        assert store.scalar("SELECT count(*) FROM problems") == 3
        assert store.scalar("SELECT string_agg(problem_id, ',' ORDER BY problem_id) FROM problems") == "p1,p2,p3"
        # Two-column keys: a quarantine row is (source, line).
        rows = [{"source": "f", "line": 1, "reason": "bad"}, {"source": "f", "line": 2, "reason": "bad"}]
        assert store.insert_rows("quarantine", rows) == 2
        assert store.insert_rows("quarantine", [{**rows[0], "reason": "again"}]) == 0
    with Store(lake, read_only=True) as store:  # a second open finds the schema and changes nothing
        assert store.scalar("SELECT count(*) FROM problems") == 3


def test_every_saved_query_gives_the_same_rows_on_a_lake_as_on_the_file_it_was_copied_from(lake, tmp_path):
    from tasks.store_copy import copy_store

    source = tmp_path / "source.duckdb"
    with Store(source) as store:
        seed_labelled_arith(store, 6)
    copied = copy_store(source, lake)
    assert all(c.ok for c in copied) and sum(c.source_rows for c in copied) > 100
    with Store(source, read_only=True) as file, Store(lake, read_only=True) as lake_store:
        for name in saved_queries():
            if name == "claims":  # leases are not copied
                continue
            expected = file.saved_query(name)
            got = lake_store.saved_query(name)
            assert got.columns == expected.columns, name
            assert sorted(map(repr, got.rows)) == sorted(map(repr, expected.rows)), name
        assert file.query("SELECT * FROM step_estimates ORDER BY ALL").rows == \
            lake_store.query("SELECT * FROM step_estimates ORDER BY ALL").rows
    with Store(source) as file:
        file.settle()
    with Store(source, read_only=True) as file, Store(lake, read_only=True) as lake_store:
        # The copy settled its estimates as it copied them: above, the lake read them settled and the
        # file computed them from its units. Now both settled, and both computed from the units: the same.
        assert lake_store.scalar("SELECT count(*) FROM unsettled_problems") == 0
        for view in ("step_estimates", "labelled_steps", "step_values", "step_estimates_live",
                     "labelled_estimates_live", "step_values_live"):
            assert file.query(f"SELECT * FROM {view} ORDER BY ALL").rows == \
                lake_store.query(f"SELECT * FROM {view} ORDER BY ALL").rows, view

    back = tmp_path / "back.duckdb"
    assert all(c.ok for c in copy_store(lake, back))
    with Store(source, read_only=True) as file, Store(back, read_only=True) as copy:
        for c in copied:
            assert sorted(map(repr, file.query(f"SELECT * FROM {c.table}").rows)) == \
                sorted(map(repr, copy.query(f"SELECT * FROM {c.table}").rows)), c.table


SETTLE_WHEN_TOLD = """
import json, sys, time
from pathlib import Path
from tasks.store import Store
with Store(sys.argv[1]) as store:
    print("ready", flush=True)
    while not Path(sys.argv[2]).exists():
        time.sleep(0.01)
    settled = store.settle()
print(json.dumps({"runs": settled.runs, "problems": settled.problems}), flush=True)
"""


def test_two_settles_at_once_on_a_lake_store_each_estimate_once(lake, tmp_path):
    """Two processes' runs end together and both settle: a lake has no key to refuse the second
    copy of a settled row, so settles take turns through settle_clock (one commit fails and
    retries, then finds nothing left to settle)."""
    import json

    with Store(lake) as store:
        seed_labelled_arith(store, 6)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", SETTLE_WHEN_TOLD, lake, str(go)], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}) for _ in range(2)]
    assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]  # both open, neither settling
    go.touch()
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(r["problems"] for r in results) == [0, 6]  # one settled everything, the other nothing
    with Store(lake, read_only=True) as store:
        assert store.query("SELECT run_id, count(*) FROM settled_runs GROUP BY ALL").rows == [("seed", 1)]
        for table, live in (("settled_step_estimates", "step_estimates_live"),
                            ("settled_labelled_estimates", "labelled_estimates_live"),
                            ("settled_step_values", "step_values_live")):
            assert store.scalar(f"SELECT count(*) FROM {table}") == store.scalar(f"SELECT count(*) FROM {live}") > 0


def test_migrate_store_refuses_a_destination_with_rows_and_names_it(lake, tmp_path):
    source = tmp_path / "source.duckdb"
    with Store(source) as store:
        seed_labelled_arith(store, 2)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    command = [sys.executable, "-m", "flows.cli", "migrate-store", "--db", str(source), "--to", lake]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "MISMATCH" not in first.stdout and "copied" in first.stdout
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode != 0
    assert "already holds rows" in again.stderr and "problems" in again.stderr


def test_lake_claims_are_inserted_never_updated_and_follow_the_file_rules(lake):
    with Store(lake) as store:
        for run in ("A", "B", "gone"):
            store.insert_rows("runs", [{"run_id": run, "flow_name": "label", "status": "running", "host": "h", "pid": 1}])
        keys = [f"k{i}" for i in range(5)]
        assert claim(store, "label", keys, "A", limit=3, lease_s=60) == ["k0", "k1", "k2"]
        assert claim(store, "label", keys, "B", limit=3, lease_s=60) == ["k3", "k4"]
        assert claim(store, "label", keys[:3], "B", limit=3, lease_s=60) == []
        with store.transaction():
            release(store, "A", ["k0", "k3"])  # k3 is B's: untouched
        assert claim(store, "label", keys, "B", limit=5, lease_s=60) == ["k0", "k3", "k4"]
        claim(store, "label", ["g"], "gone", 1, lease_s=60)
        store.finish_run("gone", "crashed")
        assert claim(store, "label", ["g"], "A", 1, lease_s=60) == ["g"]
        holders = {r["run_id"]: r["claimed"] for r in store.saved_query("claims").as_dicts()}
        assert holders == {"A": 3, "B": 3}  # A: k1, k2, g; B: k0, k3, k4
        # Nothing was ever updated or deleted: one row per claim and per release.
        assert store.scalar("SELECT count(*) FROM claims") == 3 + 2 + 3 + 1 + 1 + 1


def test_work_stored_and_released_between_a_runners_look_and_its_claim_is_not_handed_out_again(lake):
    """No lock spans a runner's look at what is stored and its claim on a lake. Runner A stores
    k0 and releases its claim just after B looked: B's claim takes the released k0, and B must
    still not compute it (CI caught B computing such a batch twice)."""
    def problem(key: str) -> dict:
        return {"problem_id": key, "dataset": "arith", "split": "train", "source": "t", "source_row": 1,
                "question": "q", "gold_answer": "6", "answer_kind": "numeric"}

    with Store(lake) as b_store, Store(lake) as a_store:
        for run in ("A", "B"):
            b_store.insert_rows("runs", [{"run_id": run, "flow_name": "label", "status": "running", "host": "h",
                                          "pid": 1}])
        assert claim(a_store, "label", ["k0"], "A", limit=1, lease_s=60) == ["k0"]
        looks: list[set[str]] = []

        def stored(keys):
            found = b_store.existing_keys("problems", "problem_id", keys)
            if not looks:  # A commits k0 right after B's first look
                with a_store.transaction():
                    a_store.insert_rows("problems", [problem("k0")])
                    release(a_store, "A", ["k0"])
            looks.append(found)
            return found

        elsewhere: list[int] = []
        batches = list(claimed_batches(b_store, "label", ["k0", "k1"], "B", batch_size=2, lease_s=60, stored=stored,
                                       on_stored_elsewhere=elsewhere.append))
    assert looks[0] == set()  # B's first look did not see k0 ...
    assert batches == [["k1"]] and elsewhere == [1]  # ... yet only k1 was handed out to compute


def test_a_lake_commit_that_fails_on_its_own_is_an_error_not_a_conflict_to_retry(lake):
    """Only a commit that lost to another writer is worth running again (StoreConflict); one DuckLake
    refuses by itself (here a macro default it cannot store) is a plain error with its reason."""
    from tasks.store import StoreConflict, StoreError

    with Store(lake) as store:
        with pytest.raises(StoreError) as caught:
            with store.transaction() as con:
                con.execute("CREATE MACRO unstorable(x := NULL) AS TABLE SELECT 1 AS y")
        assert not isinstance(caught.value, StoreConflict)
        assert "unsupported type" in str(caught.value)
        assert store.scalar("SELECT count(*) FROM problems") == 0  # the store is still usable


def test_doctor_checks_a_lake_and_finds_duplicate_keys(lake, tmp_path):
    from tasks.doctor import check_store

    with Store(lake) as store:
        seed_labelled_arith(store, 2)
    assert [c.name for c in check_store(lake) if not c.ok] == []
    with Store(lake) as store:  # what a writer that bypassed the anti-joins would leave
        store.query("INSERT INTO rollouts SELECT * FROM rollouts LIMIT 1")
    failed = {c.name: c.detail for c in check_store(lake) if not c.ok}
    assert "duplicate keys" in failed and "rollouts" in failed["duplicate keys"], failed


def test_a_lake_location_without_a_data_path_says_what_is_missing(postgres, monkeypatch):
    monkeypatch.delenv("PRMF_LAKE_DATA_PATH", raising=False)
    location = postgres.create_database("no_data_path")
    from tasks.store import StoreError

    with pytest.raises(StoreError, match="PRMF_LAKE_DATA_PATH"):
        Store(location)


@pytest.mark.engine
def test_two_label_processes_share_one_lake_without_losing_or_repeating_work(lake, tmp_path):
    """Both write the lake at once (no file lock to take turns on): every unit is stored once with
    exactly N rollouts, the runs' own counts add up, and the doctor finds nothing wrong."""
    from tasks.doctor import check_store

    n = 2
    command = [sys.executable, "-m", "flows.cli", "label", "--dataset", "arith", "--limit", "6", "--solutions", "2",
               "--rollouts", str(n), "--batch-prefixes", "2", "--max-tokens", "64", "--rollout-max-tokens", "24",
               "--json", "--db", lake]
    a, b = run_label_processes_at_once(command, tmp_path, timeout_s=480)

    with Store(lake, read_only=True) as store:
        units = store.scalar("SELECT count(*) FROM work_units")
        wanted = store.scalar(
            "SELECT count(DISTINCT (s.problem_id, st.prefix_hash)) FROM steps st JOIN solutions s USING (solution_id) "
            "WHERE st.step_index < s.num_steps")
        per_unit = {k for (k,) in store.query("SELECT count(*) FROM rollouts GROUP BY unit_id").rows}
        assert store.scalar("SELECT count(*) FROM problems") == 6
        assert store.scalar("SELECT count(*) FROM generations") == 6
        statuses = {s for (s,) in store.query("SELECT status FROM runs").rows}
        # Each run settled at its end (one settle at a time); the later one settled what both wrote.
        assert store.scalar("SELECT count(*) FROM settled_runs") == 2
        assert store.scalar("SELECT count(*) FROM unsettled_problems") == 0
    assert units == wanted > 0 and per_unit == {n}
    assert a["prefixes_recomputed"] == b["prefixes_recomputed"] == 0
    assert a["prefixes_labelled_now"] + b["prefixes_labelled_now"] == units
    assert statuses == {"completed"}
    assert [c.name for c in check_store(lake) if not c.ok] == []
