"""prmf bench store on a small synthetic store: every saved query runs under both estimates
(units' stored counts, and the pre-014 view counting every rollout), and they agree row for row."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flows.cli import app
from tasks.store import Store, saved_queries


def test_bench_store_times_every_saved_query_and_both_estimates_agree(tmp_path):
    result = CliRunner().invoke(app, ["bench", "store", "--problems", "30", "--solutions", "3", "--steps", "4",
                                      "--rollouts", "3", "--repeats", "1", "--workdir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    # 30 problems x (3 solutions x 3 rolled-out prefixes (the last step is the answer) + the bare
    # question) x 3 rollouts.
    assert report["store"] == {"problems": 30, "solutions": 90, "steps": 360, "rollouts": 900}
    rows = {r["query"]: r for r in report["results"]}
    assert set(saved_queries()) | {"count labelled_steps", "avg he, se of step_estimates"} == set(rows)
    assert all(r["same_rows"] for r in rows.values()), [q for q, r in rows.items() if not r["same_rows"]]
    assert all(r["by-rollouts"] > 0 and r["unit-counts"] > 0 for r in rows.values())
    # The counts the store keeps are the rollouts' own (what migration 014 and the labeller write).
    with Store(tmp_path / "bench-store.duckdb", read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM labelled_steps") == 360
        assert store.query(
            "SELECT count(*) FROM work_units u WHERE u.k <> (SELECT count(*) FILTER (WHERE r.correct) "
            "FROM rollouts r WHERE r.unit_id = u.unit_id)").rows == [(0,)]
        assert store.scalar("SELECT sum(k) FROM work_units") > 0
        # Gold labels and root units make the advantage queries do their whole work: every first
        # step has a value before it (its problem's root), and the gold check covers each prover.
        assert store.scalar("SELECT count(*) FROM step_advantages() WHERE step_index = 1 AND q_mu_before IS NULL") == 0
        assert store.scalar("SELECT count(*) FROM step_advantages() WHERE step_index = 1") == 90
        assert {row[0] for row in store.saved_query("advantages_vs_gold").rows} == {"bo2", "bo4", "bo8"}
