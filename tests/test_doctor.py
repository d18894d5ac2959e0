"""prmf doctor on real DuckDB files: healthy, damaged and with a run left by a dead process."""

from __future__ import annotations

import socket

from typer.testing import CliRunner

from flows.cli import app
from tasks.doctor import check_store
from tasks.store import Store
from tests.helpers import seed_store

runner = CliRunner()


def by_name(checks):
    return {c.name: c for c in checks}


def test_healthy_store_passes_every_check(db_path):
    with Store(db_path) as store:
        seed_store(store, {1: [True, False], 2: [False, False]}, False, [True, False, False])
    checks = check_store(db_path)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    result = runner.invoke(app, ["doctor", "--db", str(db_path)])
    assert result.exit_code == 0, result.output
    assert "PROBLEM" not in result.output and "engine import" in result.output


def test_damage_is_reported_with_a_fix(db_path):
    with Store(db_path) as store:
        seed_store(store, {1: [True, False], 2: [False, False]}, False, [True, False, False])
        store.query("DELETE FROM rollouts WHERE rollout_id = 'u1:0'")  # a half-stored unit (its correct rollout)
        store.query("UPDATE work_units SET k = 2 WHERE unit_id = 'u2'")  # a count unlike its rollouts (0 of 2)
        store.query("DELETE FROM steps WHERE step_index = 3")  # a solution missing its last step
        store.insert_rows("runs", [{"run_id": "dead", "flow_name": "label", "status": "running",
                                    "host": socket.gethostname(), "pid": 2**22 + 12345}])  # no such process
    checks = by_name(check_store(db_path))
    assert not checks["units with wrong rollout count"].ok and "u1" in checks["units with wrong rollout count"].detail
    assert not checks["solutions with missing steps"].ok
    assert not checks["unfinished runs"].ok and "dead" in checks["unfinished runs"].detail
    # Estimates sum the units' stored counts (n, k): both damaged units now disagree with their rollouts.
    wrong_k = checks["units with wrong correct count"]
    assert not wrong_k.ok and wrong_k.detail.startswith("2 bad rows, e.g. ('u1', 1, 0)")
    assert not checks["estimates mismatch rollouts"].ok
    assert checks["rollouts without step"].ok
    result = runner.invoke(app, ["doctor", "--db", str(db_path)])
    assert result.exit_code == 1
    assert "rerun the same `prmf label` command" in result.output


def test_missing_and_unreadable_stores(tmp_path):
    assert not check_store(tmp_path / "none.duckdb")[0].ok
    garbage = tmp_path / "garbage.duckdb"
    garbage.write_bytes(b"not a database" * 100)
    (check,) = check_store(garbage)
    assert not check.ok and "garbage.duckdb" in check.detail
