"""Two real `prmf label` processes started at once on the same store and the same work: they
split it through leases. No unit is computed twice, every unit is stored once, and both runs
finish with the whole job in the store. Bounded: 420 s per run."""

from __future__ import annotations

import sys

import pytest

from tasks.store import Store
from tests.helpers import run_label_processes_at_once

pytestmark = pytest.mark.engine

N = 3
COMMAND = [sys.executable, "-m", "flows.cli", "label", "--dataset", "arith", "--limit", "12", "--solutions", "2",
           "--rollouts", str(N), "--batch-prefixes", "3", "--max-tokens", "64", "--rollout-max-tokens", "24",
           "--json"]


def test_two_runners_split_overlapping_work_without_duplicates(tmp_path):
    db = tmp_path / "shared.duckdb"
    a, b = run_label_processes_at_once(COMMAND + ["--db", str(db)], tmp_path, timeout_s=420)

    with Store(db, read_only=True) as store:
        units = store.scalar("SELECT count(*) FROM work_units")
        per_run = dict(store.query("SELECT run_id, count(*) FROM work_units GROUP BY run_id").rows)
        rollouts = store.scalar("SELECT count(*) FROM rollouts")
        generations = store.scalar("SELECT count(*) FROM generations")
        per_run_generations = dict(store.query("SELECT run_id, count(*) FROM generations GROUP BY run_id").rows)
        claims = store.scalar("SELECT count(*) FROM claims")
        statuses = {r[0] for r in store.query("SELECT status FROM runs").rows}
        wanted = store.scalar(
            "SELECT count(DISTINCT (s.problem_id, st.prefix_hash)) FROM steps st JOIN solutions s USING (solution_id) "
            "WHERE st.step_index < s.num_steps"
        )

    assert units == wanted > 0  # every step prefix is labelled ...
    assert rollouts == N * units  # ... with exactly N rollouts
    # Each unit was computed by exactly one runner: the two shares add up, nothing was redone.
    assert a["prefixes_recomputed"] == b["prefixes_recomputed"] == 0
    assert a["prefixes_labelled_now"] + b["prefixes_labelled_now"] == units
    assert per_run == {a["run_id"]: a["prefixes_labelled_now"], b["run_id"]: b["prefixes_labelled_now"]}
    # Both really worked on the job (started together, they overlap for most of it).
    assert a["prefixes_labelled_now"] > 0 and b["prefixes_labelled_now"] > 0, (a, b)
    assert a["prefixes_by_other_runs"] + b["prefixes_by_other_runs"] > 0
    # Generation requests were split the same way: one request per problem, none twice.
    assert generations == 12
    assert sum(per_run_generations.values()) == 12
    assert claims == 0 and statuses == {"completed"}
    # Both summaries describe the whole job.
    assert a["labelled_prefixes"] == b["labelled_prefixes"] and a["rollouts"] == b["rollouts"] == rollouts
