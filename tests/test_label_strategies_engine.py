"""Every labelling strategy on the real engine and a real DuckDB file: the same stored solutions
labelled under each strategy (each in its own copy of the store), then checked against what is
stored: the doctor's checks, each strategy's own rules read from the raw units, and the stored
labels against the labels the stored rollouts imply."""

from __future__ import annotations

import math

import pytest

from tasks.config import DatasetSettings, LabelConfig, SamplingSettings
from tasks.doctor import check_store
from tasks.labelling.labeller import label_solutions
from tasks.labelling.strategies import SolutionState, early_stop_schedule, infer_labels
from tasks.store import Store
from tests.helpers import replay_strategy, stored_units

pytestmark = pytest.mark.engine

N = 4


@pytest.fixture(scope="module")
def solved(tmp_path_factory, _engines_closed_at_exit):
    """3 arith problems x 3 sampled solutions, stored once for every strategy."""
    from tasks.completers import get_completer
    from tasks.config import ModelSettings
    from tasks.generation import generate_solutions
    from tasks.ingest import ingest_problems

    db = tmp_path_factory.mktemp("strategies") / "solved.duckdb"
    config = LabelConfig(db=db, dataset=DatasetSettings(name="arith", limit=3), solutions=3, rollouts=N,
                         generation=SamplingSettings(temperature=0.9, max_tokens=96),
                         rollout=SamplingSettings(temperature=0.9, max_tokens=32))
    with Store(db) as store:
        ids = ingest_problems(store, config.dataset).problem_ids
        generate_solutions(store, ids, config, "gen", get_completer(ModelSettings()))
        store.query("CHECKPOINT")
    return config, ids


def labelled_copy(solved, tmp_path, strategy: str, **overrides):
    config, ids = solved
    db = tmp_path / f"{strategy}.duckdb"
    with Store(config.db) as store:
        store.backup(db)
    from tasks.completers import get_completer

    config = config.model_copy(update={"db": db, "strategy": strategy, **overrides})
    with Store(db) as store:
        summary = label_solutions(store, ids, config, f"run-{strategy}", get_completer(config.completer_settings))
    assert [c.name for c in check_store(db) if not c.ok] == []
    with Store(db, read_only=True) as store:  # exactly the units the strategy asks for, given the rollouts
        assert replay_strategy(store, strategy, N) == stored_units(store)
    return db, summary


def replayed_labels(store: Store, evaluation: str) -> dict[str, tuple[list, list]]:
    """Each solution's labels as implied by the raw rollouts stored before it finished (a prefix
    it shares may be measured later, for another solution; the view then shows that measurement)."""
    solutions = store.query("SELECT s.solution_id, s.problem_id, s.num_steps, s.correct, l.created_at FROM solutions s "
                            "JOIN labelled_solutions l USING (solution_id)").rows
    out = {}
    for sid, problem, steps, correct, finished in solutions:
        state = SolutionState(steps, correct)
        hashes = dict(store.query("SELECT step_index, prefix_hash FROM steps WHERE solution_id = ?", [sid]).rows)
        for i in range(1, steps):
            rounds = store.query(
                "SELECT u.round, count(*), count(*) FILTER (WHERE r.correct) FROM work_units u JOIN rollouts r "
                "USING (unit_id) WHERE u.problem_id = ? AND u.prefix_hash = ? AND u.strategy = ? AND u.created_at <= ? "
                "GROUP BY u.round ORDER BY u.round", [problem, hashes[i], evaluation, finished]).rows
            for _, n, k in rounds:
                state.observe(i, n, k)
        out[sid] = infer_labels(state, N)
    return out


def assert_stored_labels_follow_from_the_rollouts(db, evaluation: str) -> None:
    with Store(db, read_only=True) as store:
        replay = replayed_labels(store, evaluation)
        stored: dict[str, set] = {}
        for sid, step, he, by in store.query("SELECT solution_id, step_index, he, implied_by_step FROM step_labels").rows:
            stored.setdefault(sid, set()).add((step, he, by))
        contradictions = dict(store.query("SELECT solution_id, contradictions FROM labelled_solutions").rows)
        solutions = store.scalar("SELECT count(*) FROM solutions")
    assert len(replay) == solutions  # every solution finished
    for sid, (labels, found) in replay.items():
        assert {(x.step_index, x.he, x.implied_by) for x in labels if x.source == "inferred"} == stored.get(sid, set())
        assert contradictions[sid] == len(found)


def test_naive_measures_every_prefix_with_the_full_budget(solved, tmp_path):
    db, summary = labelled_copy(solved, tmp_path, "naive")
    with Store(db, read_only=True) as store:
        sources = store.query("SELECT source, min(n), max(n), count(*) FROM step_estimates GROUP BY 1 ORDER BY 1").rows
        prefixes = store.scalar("SELECT count(DISTINCT (s.problem_id, st.prefix_hash)) FROM steps st "
                                "JOIN solutions s USING (solution_id) WHERE st.step_index < s.num_steps")
        assert store.scalar("SELECT count(*) FROM step_labels") == 0
    assert dict((s, (lo, hi)) for s, lo, hi, _ in sources) == {"final": (1, 1), "measured": (N, N)}
    assert summary.units_total == summary.units_labelled == prefixes and summary.rounds == 1


def test_early_stop_rounds_follow_the_schedule_and_stop_at_the_first_correct_rollout(solved, tmp_path):
    db, summary = labelled_copy(solved, tmp_path, "early_stop")
    schedule = early_stop_schedule(N)
    with Store(db, read_only=True) as store:
        rounds = store.query(
            "SELECT u.problem_id, u.prefix_hash, u.round, u.n, count(*) FILTER (WHERE r.correct) FROM work_units u "
            "JOIN rollouts r USING (unit_id) GROUP BY ALL ORDER BY 1, 2, 3").rows
        early = store.scalar("SELECT count(*) FROM step_estimates WHERE early_stopped")
    by_prefix: dict[tuple, list] = {}
    for problem, prefix, round_, n, k in rounds:
        by_prefix.setdefault((problem, prefix), []).append((round_, n, k))
    for evaluated in by_prefix.values():
        assert [r for r, _, _ in evaluated] == list(range(len(evaluated)))
        assert [n for _, n, _ in evaluated] == list(schedule[:len(evaluated)])
        assert all(k == 0 for _, _, k in evaluated[:-1])  # no round after a correct rollout
        assert evaluated[-1][2] > 0 or sum(n for _, n, _ in evaluated) == N  # stopped: correct, or budget spent
    stopped = sum(1 for e in by_prefix.values() if e[-1][2] > 0 and sum(n for _, n, _ in e) < N)
    assert early >= stopped  # every early stop is flagged (shared prefixes count once per solution)
    assert_stored_labels_follow_from_the_rollouts(db, "early_stop")


@pytest.mark.parametrize("strategy", ["binary_search", "binary_search+early_stop+root"])
def test_binary_search_evaluates_log_many_prefixes_and_infers_the_rest(solved, tmp_path, strategy):
    db, summary = labelled_copy(solved, tmp_path, strategy)
    evaluation = "early_stop" if "early_stop" in strategy else "math_shepherd"
    with Store(db, read_only=True) as store:
        own = store.query(
            "SELECT s.solution_id, s.num_steps, s.correct, count(DISTINCT u.step_index) FILTER (WHERE u.step_index > 0) "
            "FROM solutions s LEFT JOIN work_units u USING (solution_id) GROUP BY ALL").rows
        roots = store.query("SELECT problem_id, n, round FROM work_units WHERE step_index = 0").rows
        problems = store.scalar("SELECT count(*) FROM problems")
        inferred = store.scalar("SELECT count(*) FROM step_estimates WHERE source = 'inferred'")
    for _, steps, correct, evaluated in own:
        # Prefixes this solution asked for (shared ones may be stored under another solution's name).
        assert evaluated == 0 if correct else evaluated <= math.ceil(math.log2(steps))
    if strategy.endswith("+root"):
        assert len({p for p, _, _ in roots}) == problems  # one root evaluation per problem
        assert {(n, round_) for _, n, round_ in roots} == {(N, 0)}  # the bare question gets the full budget
    else:
        assert roots == []
    assert summary.inferred_steps > 0 and inferred > 0
    assert_stored_labels_follow_from_the_rollouts(db, evaluation)


def test_filter_skips_the_prefixes_of_all_correct_and_all_wrong_problems(solved, tmp_path):
    db, _ = labelled_copy(solved, tmp_path, "naive+filter")
    with Store(db, read_only=True) as store:
        problems = store.query("SELECT problem_id, bool_and(correct), bool_or(correct) FROM solutions GROUP BY 1").rows
        with_units = {p for (p,) in store.query("SELECT DISTINCT problem_id FROM work_units").rows}
        recorded = dict(store.query("SELECT s.problem_id, any_value(l.filtered) FROM labelled_solutions l "
                                    "JOIN solutions s USING (solution_id) GROUP BY 1").rows)
        inferred_good = store.query("SELECT DISTINCT s.problem_id FROM step_labels l JOIN solutions s USING (solution_id) "
                                    "WHERE l.he AND l.implied_by_step = s.num_steps").rows
    for problem, all_correct, any_correct in problems:
        reason = "all_correct" if all_correct else None if any_correct else "all_wrong"
        assert recorded[problem] == reason
        assert (problem in with_units) == (reason is None)
    # All-correct problems' steps are inferred from their final answers; nothing else infers under naive.
    assert {p for (p,) in inferred_good} == {p for p, all_correct, _ in problems if all_correct}


def test_reuse_turns_every_settled_rollout_into_a_labelled_solution(solved, tmp_path):
    """binary_search+root+reuse: the solutions made from rollouts are exactly prefix + rollout for
    every rollout of the generator solutions' prefixes and of the bare question (built here by
    string concatenation), graded as the rollout was, with gold step labels; correct ones cost
    nothing more, wrong ones from a prefix without a correct rollout cost nothing more, and the
    rest are searched after their parent prefix only (a root rollout: from the question)."""
    from tasks.labelling.labeller import ROOT_PREFIX_HASH
    from tasks.steps import prefix_text

    # Rollouts long enough to finish, so that some are correct and reused ones have steps to search.
    db, summary = labelled_copy(solved, tmp_path, "binary_search+root+reuse",
                                rollout=SamplingSettings(temperature=0.9, max_tokens=96))
    with Store(db, read_only=True) as store:
        def rollouts(problem, prefix_hash):
            return store.query("SELECT r.text, r.correct FROM work_units u JOIN rollouts r USING (unit_id) "
                               "WHERE u.problem_id = ? AND u.prefix_hash = ?", [problem, prefix_hash]).rows

        expected = {}
        for (problem,) in store.query("SELECT problem_id FROM problems").rows:
            expected.update({(problem, text): correct for text, correct in rollouts(problem, ROOT_PREFIX_HASH)
                             if text.strip()})
        for sid, problem in store.query(
                "SELECT solution_id, problem_id FROM solutions WHERE generator_model NOT LIKE 'rollouts:%'").rows:
            steps = store.query("SELECT text, prefix_hash FROM steps WHERE solution_id = ? ORDER BY step_index", [sid]).rows
            for i, (_, prefix_hash) in enumerate(steps[:-1], start=1):
                expected.update({(problem, prefix_text([t for t, _ in steps], i) + text): correct
                                 for text, correct in rollouts(problem, prefix_hash) if text.strip()})
        reused = store.query("SELECT s.problem_id, s.text, s.correct, s.solution_id, rr.parent_step, s.num_steps "
                             "FROM solutions s JOIN reused_rollouts rr USING (solution_id)").rows
        asked = dict(store.query("SELECT solution_id, list(step_index) FROM work_units GROUP BY 1").rows)
        parent_good = {sid: k > 0 for sid, k in store.query(
            "SELECT rr.solution_id, count(*) FILTER (WHERE r.correct) FROM reused_rollouts rr "
            "JOIN steps st ON st.solution_id = rr.solution_id AND st.step_index = rr.parent_step "
            "JOIN work_units u ON u.problem_id = rr.problem_id AND u.prefix_hash = st.prefix_hash "
            "JOIN rollouts r USING (unit_id) GROUP BY 1").rows}
        missing_gold = store.scalar("SELECT count(*) FROM steps st JOIN reused_rollouts USING (solution_id) WHERE st.gold IS NULL")
        markers = store.scalar("SELECT count(*) FROM labelled_solutions")
        solutions = store.scalar("SELECT count(*) FROM solutions")
    assert expected and {(p, t): c for p, t, c, *_ in reused} == expected
    assert summary.reused_rollouts == len(reused) and markers == solutions and missing_gold == 0
    searched = 0
    for _, _, correct, sid, parent_step, steps in reused:
        own = asked.get(sid, [])
        if correct or (parent_step > 0 and not parent_good[sid]):
            assert own == []
        else:
            assert all(i > parent_step for i in own) and len(own) <= math.ceil(math.log2(steps - parent_step))
            searched += len(own) > 0
    assert searched > 0
    assert_stored_labels_follow_from_the_rollouts(db, "math_shepherd")


def test_step_advantages_under_a_separate_prover_follow_from_the_stored_rollouts(solved, tmp_path):
    """PAV: the base completer and a separate prover (the same model sampling hotter: its own
    completer identity in the store) each label the same solutions with naive+root; the
    step_advantages macro then equals the advantages and rewards recomputed here from the raw
    rollouts with tasks/labelling/advantages.py, for the prover and for Best-of-4."""
    from tasks.completers import get_completer
    from tasks.labelling.advantages import advantages, best_of_k, effective_rewards

    config, ids = solved
    db, _ = labelled_copy(solved, tmp_path, "naive+root")
    prover = config.model_copy(update={"db": db, "strategy": "naive+root",
                                       "rollout": config.rollout.model_copy(update={"temperature": 1.3})})
    with Store(db) as store:  # the prover on one problem (the macro pairs evaluations per problem)
        label_solutions(store, ids[:1], prover, "run-prover", get_completer(prover.completer_settings))
    base_params, prover_params = config.rollout.key(), prover.rollout.key()
    with Store(db, read_only=True) as store:
        def values(sid: str, params: str) -> list[float | None]:
            problem, steps, correct = store.query(
                "SELECT problem_id, num_steps, correct FROM solutions WHERE solution_id = ?", [sid]).rows[0]
            hashes = [h for (h,) in store.query(
                "SELECT prefix_hash FROM steps WHERE solution_id = ? ORDER BY step_index", [sid]).rows]
            out = []
            for h in range(0, steps):
                n, k = store.query(
                    "SELECT count(*), count(*) FILTER (WHERE r.correct) FROM work_units u JOIN rollouts r USING (unit_id) "
                    "WHERE u.problem_id = ? AND u.params = ? AND " + ("u.step_index = 0" if h == 0 else "u.prefix_hash = ?"),
                    [problem, params] + ([] if h == 0 else [hashes[h - 1]])).rows[0]
                out.append(k / n if n else None)
            return out + [1.0 if correct else 0.0]

        rows = store.query("SELECT solution_id, step_index, prover, prover_kind, q_pi, a_mu, reward "
                           "FROM step_advantages(alpha := 0.5, k := 4) WHERE base_params = ? "
                           "ORDER BY solution_id, prover, step_index", [base_params]).rows
        solutions = dict(store.query("SELECT solution_id, problem_id = ? FROM solutions", [ids[0]]).rows)
        q = {sid: (values(sid, base_params), values(sid, prover_params)) for sid in solutions}
    assert {kind for *_, kind, _, _, _ in rows} == {"best_of_k", "completer"}
    for sid, proved in solutions.items():
        q_pi, q_prover = q[sid]
        q_bo4 = [None if v is None else best_of_k(v, 4) for v in q_pi]
        for kind, q_mu in (("best_of_k", q_bo4), ("completer", q_prover)):
            stored = [(a, r) for s, _, _, k, _, a, r in rows if s == sid and k == kind]
            if kind == "completer" and not proved:
                assert stored == []  # the prover rolled out nothing of this problem
                continue
            expected = list(zip(advantages(q_mu), effective_rewards(q_pi[1:], advantages(q_mu), 0.5)))
            assert len(stored) == len(expected)
            for (a, r), (ea, er) in zip(stored, expected):
                assert a == pytest.approx(ea) and r == pytest.approx(er)
