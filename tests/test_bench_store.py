"""prmf bench store on a small synthetic store: every saved query runs under the three estimates
(settled, computed from the units' stored counts, and the pre-014 view counting every rollout), and
they agree row for row."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flows.cli import app
from tasks.store import Store, saved_queries


def test_bench_store_times_every_saved_query_and_the_three_estimates_agree(tmp_path):
    result = CliRunner().invoke(app, ["bench", "store", "--problems", "30", "--solutions", "3", "--steps", "4",
                                      "--rollouts", "3", "--repeats", "1", "--running-problems", "5", "--workdir", str(tmp_path),
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    # 30 problems x (3 solutions x 3 rolled-out prefixes (the last step is the answer) + the bare
    # question) x 3 rollouts.
    assert report["store"] == {"problems": 30, "solutions": 90, "steps": 360, "rollouts": 900}
    rows = {r["query"]: r for r in report["results"]}
    assert set(saved_queries()) | {"count labelled_steps", "avg he, se of step_estimates"} == set(rows)
    assert all(r["same_rows"] for r in rows.values()), [q for q, r in rows.items() if not r["same_rows"]]
    assert all(r["by-rollouts"] > 0 and r["unit-counts"] > 0 and r["settled"] > 0 for r in rows.values())
    assert report["settled_problems"] == 30 and report["settle_s"] > 0
    assert report["running_problems"] == 5 and report["running_settle_s"] > 0
    assert all(r["running"] > 0 for r in rows.values())
    # The counts the store keeps are the rollouts' own (what migration 014 and the labeller write).
    with Store(tmp_path / "bench-store.duckdb", read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM labelled_steps") == 360
        assert store.scalar("SELECT count(*) FROM unsettled_problems") == 0  # the bench settled it
        # The running run's second completer: 5 problems x 3 solutions x 3 rolled-out prefixes, settled.
        assert store.scalar("SELECT count(*) FROM settled_step_estimates "
                            "WHERE completer_model = 'bench-second-completer'") == 45
        assert store.query(
            "SELECT count(*) FROM work_units u WHERE u.k <> (SELECT count(*) FILTER (WHERE r.correct) "
            "FROM rollouts r WHERE r.unit_id = u.unit_id)").rows == [(0,)]
        assert store.scalar("SELECT sum(k) FROM work_units") > 0
        # Gold labels and root units make the advantage queries do their whole work: every first
        # step has a value before it (its problem's root), and the gold check covers each prover.
        assert store.scalar("SELECT count(*) FROM step_advantages() WHERE step_index = 1 AND q_mu_before IS NULL") == 0
        # First steps: one Best-of-4 row per solution and evaluation (90 + the running run's second
        # completer on 5 problems x 3 solutions), and on those 15 solutions each evaluation is the
        # other's separate prover (2 x 15).
        assert store.scalar("SELECT count(*) FROM step_advantages() WHERE step_index = 1") == 90 + 15 + 2 * 15
        assert {row[0] for row in store.saved_query("advantages_vs_gold").rows} == {
            "bo2", "bo4", "bo8", "bench-completer@99914b93/N3", "bench-second-completer@99914b93/N3"}


def test_the_saved_gold_check_of_advantages_gives_the_python_gold_checks_aucs(tmp_path):
    """advantages_vs_gold counts AUCs from tallies per distinct value over one
    step_advantages_for_ks([2, 4, 8]); tasks.labelling.gold_check ranks every step in Python over one
    call per K (a second implementation of both): the same AUCs on a synthetic store whose
    rollouts, values and gold labels vary, with its values computed from the units and settled."""
    import pytest

    from tasks.bench_export import build_store
    from tasks.labelling.gold_check import gold_check

    db = tmp_path / "store.duckdb"
    build_store(db, problems=40, solutions=3, steps=4, rollouts=4)
    with Store(db) as store:
        saved = {r["prover"]: r for r in store.saved_query("advantages_vs_gold").as_dicts()}
        python = {c.prover: c for c in gold_check(store, alpha=0.5, n_boot=1)}
        assert store.settle().problems == 40
        assert {r["prover"]: r for r in store.saved_query("advantages_vs_gold").as_dicts()} == saved
    assert set(saved) == {"bo2", "bo4", "bo8"} and set(python) >= set(saved)
    for prover, row in saved.items():
        check = python[prover]
        assert row["steps"] == check.steps
        got = (row["auc_q_pi"], row["auc_a_mu"], row["auc_reward"])
        assert got == pytest.approx((check.q_pi.value, check.a_mu.value, check.reward.value), abs=5e-4), prover
        assert 0.3 < check.q_pi.value < 0.7 and check.q_pi.value != 0.5  # not a degenerate store
