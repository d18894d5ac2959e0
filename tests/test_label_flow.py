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
        # The run settled its problems at its end: the checks above read the settled estimates.
        assert store.query("SELECT run_id FROM settled_runs").rows == [(summary["run_id"],)]
        assert store.scalar("SELECT count(*) FROM unsettled_problems") == 0

    assert summary["problems"] == 4 and summary["rollouts"] >= rollouts

    # A second run of the same flow finds every unit stored and adds nothing.
    again = label(config=config)
    assert again["prefixes_labelled_now"] == 0 and again["new_solutions"] == 0
    with Store(db_path, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM rollouts") == rollouts
        assert store.scalar("SELECT count(*) FROM runs WHERE status = 'completed'") == 2


def test_step_format_is_used_by_prompts_splitting_and_prefixes(prefect_harness, engine, db_path):
    """A run with step_format=paragraph: the prompts ask for blank-line steps, the stored steps are
    the paragraph split of each solution, and every rollout continues from that split's prefix."""
    import json

    from tasks.generation import generation_key
    from tasks.models import resolve_model
    from tasks.steps import prefix_text, split_steps
    from tasks.store import content_key

    config = small_config(db_path, dataset={"name": "arith", "limit": 2}, solutions=2, rollouts=2,
                          step_format="paragraph")
    label(config=config)
    with Store(db_path, read_only=True) as store:
        solutions = store.query("SELECT solution_id, problem_id, text, step_format FROM solutions").rows
        assert solutions and {r[3] for r in solutions} == {"paragraph"}
        for solution_id, _, text, _ in solutions:
            stored = [r[0] for r in store.query("SELECT text FROM steps WHERE solution_id = ? ORDER BY step_index",
                                                [solution_id]).rows]
            steps = split_steps(text, "paragraph")
            assert stored == steps
            hashes = [r[0] for r in store.query("SELECT prefix_hash FROM steps WHERE solution_id = ? "
                                                "ORDER BY step_index", [solution_id]).rows]
            assert hashes == [content_key(prefix_text(steps, k, "paragraph")) for k in range(1, len(steps) + 1)]
        # The generator request is keyed by the format: a line-format run of the same problems is other work.
        generator = resolve_model(config.generator.model).identity
        params = config.generation.key()
        keys = {r[0] for r in store.query("SELECT generation_id FROM generations").rows}
        assert keys == {generation_key(p, generator, params, 2, "paragraph") for p in {r[1] for r in solutions}}
        assert not keys & {generation_key(p, generator, params, 2, "line") for p in {r[1] for r in solutions}}
        stored_config = json.loads(store.scalar("SELECT config FROM runs"))
        assert stored_config["step_format"] == "paragraph"
