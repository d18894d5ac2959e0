"""End-to-end: a real label flow run (Prefect) with the real engine and a real DuckDB file."""

from __future__ import annotations

import pytest

from flows.label import label
from tasks.config import LabelConfig
from tasks.store import Store

pytestmark = pytest.mark.engine


def small_config(db_path, **overrides) -> LabelConfig:
    base = dict(
        db=db_path,
        dataset={"name": "arith", "limit": 4},
        solutions=3,
        rollouts=4,
        generation={"temperature": 0.7, "max_tokens": 80},
        rollout={"temperature": 0.7, "max_tokens": 48},
        batch_prefixes=8,
    )
    return LabelConfig.model_validate(base | overrides)


def test_label_flow_records_every_prefix(prefect_harness, engine, db_path):
    config = small_config(db_path)
    summary = label(config=config)

    with Store(db_path, read_only=True) as store:
        # Every non-final step of every stored solution has exactly N rollouts behind it.
        missing = store.query(
            """
            SELECT st.solution_id, st.step_index FROM steps st JOIN solutions s USING (solution_id)
            WHERE st.step_index < s.num_steps AND NOT EXISTS (
                SELECT 1 FROM step_estimates e
                WHERE e.solution_id = st.solution_id AND e.step_index = st.step_index AND e.n = 4)
            """
        ).rows
        assert missing == []
        # step_estimates equals counts recomputed from raw rollouts.
        mismatches = store.query(
            """
            WITH recomputed AS (
                SELECT st.solution_id, st.step_index, count(*) AS n, sum(r.correct::INT) AS k
                FROM steps st JOIN solutions s USING (solution_id)
                JOIN work_units u ON u.problem_id = s.problem_id AND u.prefix_hash = st.prefix_hash
                JOIN rollouts r ON r.unit_id = u.unit_id
                GROUP BY ALL
            )
            SELECT * FROM step_estimates e JOIN recomputed c USING (solution_id, step_index)
            WHERE NOT e.from_final_answer AND (e.n <> c.n OR e.k <> c.k OR e.he <> (c.k > 0) OR e.se <> c.k / c.n)
            """
        ).rows
        assert mismatches == []
        # Final steps carry the solution's own correctness.
        finals = store.query(
            "SELECT e.k, s.correct FROM step_estimates e JOIN solutions s USING (solution_id) WHERE e.from_final_answer"
        ).rows
        assert finals and all(k == int(correct) for k, correct in finals)
        n_estimates = store.scalar("SELECT count(*) FROM step_estimates")
        n_steps = store.scalar("SELECT count(*) FROM steps")
        assert n_estimates == n_steps
        # Arith steps all have gold labels; the run row is complete and links to the flow run.
        assert store.scalar("SELECT count(*) FROM steps WHERE gold IS NULL") == 0
        run = store.query("SELECT status, tokens_generated, run_id FROM runs").as_dicts()
        assert len(run) == 1 and run[0]["status"] == "completed" and run[0]["tokens_generated"] > 0
        assert run[0]["run_id"] == summary["run_id"]
        rollouts = store.scalar("SELECT count(*) FROM rollouts")
        assert rollouts == 4 * store.scalar("SELECT count(*) FROM work_units") > 0
        assert store.scalar("SELECT count(DISTINCT problem_id) FROM solutions") == 4

    assert summary["problems"] == 4 and summary["rollouts"] >= rollouts

    # A second run of the same flow finds every unit stored and adds nothing.
    again = label(config=config)
    assert again["prefixes_labelled_now"] == 0 and again["new_solutions"] == 0
    with Store(db_path, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM rollouts") == rollouts
        assert store.scalar("SELECT count(*) FROM runs WHERE status = 'completed'") == 2
