"""Settled estimates (migration 015): once the runs that wrote a problem have ended, Store.settle()
stores its estimates, and the views read them instead of computing them from the units. A problem
that a running run writes is computed from its units until that run ends and settles."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.bench_export import build_store
from tasks.doctor import check_store
from tasks.store import Store, StoreError, saved_queries
from tests.helpers import seed_store

READS = {
    "step_estimates": "SELECT * FROM step_estimates",
    "labelled_steps": "SELECT * FROM labelled_steps",
    "step_values": "SELECT * FROM step_values",
    "advantages": "SELECT * FROM step_advantages_for_ks([2, 4, 8], alpha := 0.3)",
}


def _everything(store: Store) -> dict[str, list[str]]:
    reads = {**READS, **{name: path.read_text() for name, path in saved_queries().items()}}
    return {name: sorted(map(repr, store.query(sql).rows)) for name, sql in reads.items()}


def _problem(check_name: str, db) -> bool:
    return any(c.name == check_name and not c.ok for c in check_store(db))


def test_settled_estimates_are_what_the_units_give_and_queries_read_them(tmp_path):
    db = tmp_path / "store.duckdb"
    build_store(db, problems=20, solutions=3, steps=4, rollouts=4)
    with Store(db) as store:
        assert store.scalar("SELECT count(*) FROM unsettled_problems") == 20  # nothing settled yet
        live = _everything(store)
        settled = store.settle()
        assert (settled.runs, settled.problems, settled.unsettled) == (["bench"], 20, 0)
        assert store.scalar("SELECT count(*) FROM settled_step_estimates") == 20 * 3 * 4
        assert store.scalar("SELECT count(*) FROM settled_labelled_estimates") == 20 * 3 * 4
        assert store.scalar("SELECT count(*) FROM settled_step_values") == 20 * 3 * 5  # states 0..4, one evaluation
        assert _everything(store) == live
        again = store.settle()  # nothing ended since: nothing to do
        assert (again.runs, again.problems) == ([], 0)

        # The views read the stored rows (a hand edit shows through), and the doctor finds the edit.
        solution, step = store.query("SELECT solution_id, step_index FROM settled_step_estimates "
                                     "WHERE NOT from_final_answer ORDER BY ALL LIMIT 1").rows[0]
        store.query("UPDATE settled_step_estimates SET se = 0.123 WHERE solution_id = $s AND step_index = $i",
                    {"s": solution, "i": step})
        assert store.scalar("SELECT se FROM step_estimates WHERE solution_id = $s AND step_index = $i",
                            {"s": solution, "i": step}) == 0.123
    assert _problem("settled estimates unlike their units", db)

    result = CliRunner().invoke(app, ["settle", "--all", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "settled 1 runs: 20 problems" in result.output
    assert not _problem("settled estimates unlike their units", db)
    with Store(db, read_only=True) as store:
        assert _everything(store) == live


def test_a_problem_a_running_run_writes_is_computed_from_its_units_until_that_run_settles(tmp_path):
    db = tmp_path / "store.duckdb"
    with Store(db) as store:
        # p1: one 3-step solution; prefix 1 has 2 of 4 rollouts correct, prefix 2 none of 4.
        seed_store(store, {1: [True, False, False, True], 2: [False, False, False, False]}, False, [True, False, False])
        assert store.settle().problems == 1

        # A second completer (run r2, still running) rolls prefix 2 out twice, once correctly.
        store.insert_rows("runs", [{"run_id": "r2", "flow_name": "label", "status": "running"}])
        store.insert_rows("work_units", [{
            "unit_id": "u2b", "problem_id": "p1", "prefix_hash": "h2", "completer_model": "m2", "params": "{}",
            "strategy": "math_shepherd", "budget": 2, "n": 2, "k": 1, "round": 0, "solution_id": "s1",
            "step_index": 2, "run_id": "r2"}])
        store.insert_rows("rollouts", [{
            "rollout_id": f"u2b:{i}", "unit_id": "u2b", "sample_index": i, "solution_id": "s1", "step_index": 2,
            "text": "x", "answer": None, "correct": c, "grade_status": "ok", "num_tokens": 3, "run_id": "r2"}
            for i, c in enumerate([False, True])])

        def step_2() -> tuple[list[tuple], tuple]:
            rows = store.query("SELECT completer_model, n, k, se FROM step_estimates WHERE step_index = 2 "
                               "ORDER BY completer_model").rows
            return rows, store.query("SELECT he, se FROM labelled_steps WHERE step_index = 2").rows[0]

        assert store.query("SELECT problem_id FROM unsettled_problems").rows == [("p1",)]
        # Computed from the units, r2's included; pooled over both completers: 1 of 6 correct.
        assert step_2() == ([("m", 4, 0, 0.0), ("m2", 2, 1, 0.5)], (True, pytest.approx(1 / 6)))
        assert store.query("SELECT completer_model, n, k FROM settled_step_estimates WHERE step_index = 2").rows == \
            [("m", 4, 0)]  # the settled rows wait for r2

        assert (store.settle().runs, store.settle().unsettled) == ([], 1)  # r2 is still running
        store.finish_run("r2", "completed")
        settled = store.settle()
        assert (settled.runs, settled.problems, settled.unsettled) == (["r2"], 1, 0)
        assert step_2() == ([("m", 4, 0, 0.0), ("m2", 2, 1, 0.5)], (True, pytest.approx(1 / 6)))
        assert store.query("SELECT completer_model, n, k FROM settled_step_estimates WHERE step_index = 2 "
                           "ORDER BY ALL").rows == [("m", 4, 0), ("m2", 2, 1)]
    assert [c.name for c in check_store(db) if not c.ok] == []


def test_settle_needs_a_writable_store_and_an_existing_one(tmp_path):
    db = tmp_path / "store.duckdb"
    build_store(db, problems=2, solutions=1, steps=2, rollouts=1)
    with Store(db, read_only=True) as store, pytest.raises(StoreError, match="open the store for writing"):
        store.settle()
    result = CliRunner().invoke(app, ["settle", "--db", str(tmp_path / "missing.duckdb")])
    assert result.exit_code == 2 and "missing.duckdb does not exist" in result.output
