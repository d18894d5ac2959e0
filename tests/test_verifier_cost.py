"""What a verifier's training data cost (tasks/training/cost.py, sql/internal/training_data_cost.sql)
and its step scores against arith gold step labels (tasks/verifiers/gold_check.py, prmf gold-steps),
on hand-built stores whose expected numbers are counted by hand."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.arith import gold_step_labels, problem_from_meta
from tasks.store import Store, StoreError
from tasks.training.cost import training_cost
from tasks.verifiers.gold_check import gold_step_check
from tests.helpers import seed_store


def _unit(store: Store, unit: str, problem: str, prefix: str, step: int, tokens: list[int]) -> None:
    store.insert_rows("work_units", [{"unit_id": unit, "problem_id": problem, "prefix_hash": prefix,
                                      "completer_model": "m", "params": "{}", "strategy": "math_shepherd",
                                      "budget": len(tokens), "n": len(tokens), "k": 0, "round": 0, "solution_id": "s1",
                                      "step_index": step, "run_id": "r"}])
    store.insert_rows("rollouts", [{"rollout_id": f"{unit}:{i}", "unit_id": unit, "sample_index": i,
                                    "solution_id": "s1", "step_index": step, "text": "x", "answer": None,
                                    "correct": False, "grade_status": "ok", "num_tokens": t, "run_id": "r"}
                                   for i, t in enumerate(tokens)])


def _solution(store: Store, solution: str, problem: str, generation: str, generator: str, generation_tokens: int,
              tokens: int, prefixes: list[str]) -> None:
    store.insert_rows("generations", [{"generation_id": generation, "problem_id": problem, "generator_model": generator,
                                       "params": "{}", "n": 2, "num_tokens": generation_tokens, "run_id": "r"}])
    store.insert_rows("solutions", [{"solution_id": solution, "problem_id": problem, "generation_id": generation,
                                     "generator_model": generator, "text": "t", "final_answer": "6", "correct": True,
                                     "grade_status": "ok", "num_tokens": tokens, "num_steps": len(prefixes),
                                     "run_id": "r"}])
    store.insert_rows("steps", [{"solution_id": solution, "step_index": i + 1, "text": "s", "prefix_hash": h,
                                 "gold": None} for i, h in enumerate(prefixes)])


@pytest.fixture
def costed_store(db_path):
    """Problem p1: solution s1 (generation g1, 10 tokens; prefixes h1, h2, h3) with rollouts from
    h1 (u1: 2 x 3 tokens) and h2 (u2: 3 x 3 tokens); s2 (generation g2, 25 tokens for its 2
    samples) shares prefix h1; s3, a reused rollout (7 tokens), also starts with h1; 4 x 5 tokens
    of rollouts from the bare question (root unit). Problem p2 has a unit under the same prefix
    hash h1 (another problem's prefix: never counted)."""
    with Store(db_path) as store:
        seed_store(store, {1: [True, False], 2: [False, False, False]}, True, [None, None, None])
        _solution(store, "s2", "p1", "g2", "m", 25, 12, ["h1", "h2b"])
        _solution(store, "s3", "p1", "g3", "rollouts:m", 0, 7, ["h1", "h3b"])
        _unit(store, "root", "p1", "root", 0, [5, 5, 5, 5])
        store.insert_rows("problems", [{"problem_id": "p2", "dataset": "arith", "split": "train", "source": "t",
                                        "source_row": 2, "question": "q2", "gold_answer": "1",
                                        "answer_kind": "numeric", "meta": "{}"}])
        _unit(store, "other", "p2", "h1", 1, [100])
        # a second round from h2 (early-stop strategies add rounds): counted too
        store.query("INSERT INTO work_units BY NAME SELECT * REPLACE ('u2r1' AS unit_id, 1 AS round, 1 AS n, 0 AS k) "
                    "FROM work_units WHERE unit_id = 'u2'")
        store.insert_rows("rollouts", [{"rollout_id": "u2r1:0", "unit_id": "u2r1", "sample_index": 0,
                                        "solution_id": "s1", "step_index": 2, "text": "x", "answer": None,
                                        "correct": False, "grade_status": "ok", "num_tokens": 4, "run_id": "r"}])
    return db_path


def test_training_cost_counts_requests_and_each_rollout_once(costed_store):
    with Store(costed_store) as store:
        everything = ["s1", "s2", "s3"]
        # PRM: generation requests g1 + g2 (s3 is a rollout: counted with the rollouts); rollouts
        # from h1 (6) and h2 (9 + the second round's 4), h1 once although three solutions share it.
        prm = training_cost(store, everything, "prm", "he", training_tokens=1234)
        assert (prm.solution_tokens, prm.rollout_tokens, prm.training_tokens) == (35, 19, 1234)
        assert (prm.generated_tokens, prm.total_tokens) == (54, 1288)
        # PAV also needs the bare question's rollouts (the first step's advantage): + 20.
        assert training_cost(store, everything, "prm", "pav", 0).rollout_tokens == 39
        # ORM and implicit PRM need no rollouts; the reused rollout's own 7 tokens count as a solution.
        for kind, target in (("orm", "correct"), ("implicit", "outcome")):
            cost = training_cost(store, everything, kind, target, 5)
            assert (cost.solution_tokens, cost.rollout_tokens, cost.training_tokens) == (42, 0, 5)
        # Only s2: its request and the rollouts from its one non-final prefix (h1).
        only = training_cost(store, ["s2", None], "prm", "se", 0)
        assert (only.solution_tokens, only.rollout_tokens) == (25, 6)
        assert training_cost(store, [], "prm", "he", 0).columns() == {
            "solution_tokens": 0, "rollout_tokens": 0, "training_tokens": 0}


# --- step scores against arith gold step labels ----------------------------------------------

# Two arith problems; each has a right, a wrong and a half-right candidate (gold T T T / F F F / T F F).
PROBLEMS = {
    "pa": ({"given_numbers": [3, 4, 2], "operations": [["+", 4], ["*", 2]], "gold_values": [7, 14]}, "14",
           [["3 + 4 = 7", "7 * 2 = 14", "The answer is 14."], ["3 + 4 = 8", "8 * 2 = 16", "The answer is 16."],
            ["3 + 4 = 7", "7 * 2 = 15", "The answer is 15."]]),
    "pb": ({"given_numbers": [5, 1, 6], "operations": [["-", 1], ["+", 6]], "gold_values": [4, 10]}, "10",
           [["5 - 1 = 4", "4 + 6 = 10", "The answer is 10."], ["5 - 1 = 3", "3 + 6 = 9", "The answer is 9."],
            ["5 - 1 = 4", "4 + 6 = 11", "The answer is 11."]]),
}
GOLD = [[True, True, True], [False, False, False], [True, False, False]]
# A PRM's step scores per candidate (the same for both problems).
PRM_SCORES = [[0.9, 0.8, 0.7], [0.3, 0.2, 0.1], [0.5, 0.6, 0.4]]
# An implicit PRM's stored step rewards r_t; cumulative q_t: [.2 .3 .6], [-.1 -.3 -.8], [-.15 .15 .05].
IMPLICIT_REWARDS = [[0.2, 0.1, 0.3], [-0.1, -0.2, -0.5], [-0.15, 0.3, -0.1]]


def _seed_gold_pool(store: Store) -> None:
    store.insert_rows("eval_pools", [{"pool_id": "pool", "dataset": "arith", "split": "test", "source": "generated",
                                      "generator_model": "m", "params": "{}", "n_max": 3}])
    for model_id, kind, created in (("prm-a", "prm", "2026-11-01"), ("implicit-b", "implicit", "2026-11-02")):
        store.insert_rows("prm_models", [{"model_id": model_id, "kind": kind, "base_model": "m", "target": "he",
                                          "path": "/nowhere", "data_snapshot": "{}", "hyperparameters": "{}",
                                          "val_metrics": "{}", "created_at": created}])
    for row, (problem_id, (meta, answer, candidates)) in enumerate(PROBLEMS.items()):
        store.insert_rows("problems", [{"problem_id": problem_id, "dataset": "arith", "split": "test",
                                        "source": "t", "source_row": row + 1, "question": f"question {problem_id}",
                                        "gold_answer": answer, "answer_kind": "numeric", "meta": json.dumps(meta)}])
        for index, steps in enumerate(candidates):
            store.insert_rows("eval_candidates", [{
                "pool_id": "pool", "problem_id": problem_id, "candidate_index": index, "question": "q",
                "gold_answer": answer, "text": "\n".join(steps), "steps": json.dumps(steps),
                "final_answer": steps[-1].split()[-1].rstrip("."), "correct": index == 0, "grade_status": "ok",
                "num_tokens": 9}])
            store.insert_rows("eval_scores", [
                {"model_id": "prm-a", "pool_id": "pool", "problem_id": problem_id, "candidate_index": index,
                 "step_scores": PRM_SCORES[index]},
                {"model_id": "implicit-b", "pool_id": "pool", "problem_id": problem_id, "candidate_index": index,
                 "step_scores": IMPLICIT_REWARDS[index]}])


def test_the_hand_written_gold_labels_are_arith_s():
    for meta, answer, candidates in PROBLEMS.values():
        problem = problem_from_meta("q", answer, meta)
        assert [gold_step_labels(problem, steps, i == 0) for i, steps in enumerate(candidates)] == GOLD


def test_gold_step_check_on_hand_counted_aucs(db_path):
    with Store(db_path) as store:
        _seed_gold_pool(store)
        check = gold_step_check(store, n_boot=200)
        with pytest.raises(StoreError, match="prm-missing has no scores on an arith test pool"):
            gold_step_check(store, ["prm-missing"])
        with pytest.raises(StoreError, match="no step-scoring model"):
            gold_step_check(store, split="validation")
    assert (check.problems, check.candidates, check.non_final_steps, check.non_final_gold_correct,
            check.all_steps) == (2, 6, 12, 6, 18)
    by_name = {s.scorer: s for s in check.scorers}
    assert [s.scorer for s in check.scorers] == ["prm-a", "implicit-b:cumulative", "implicit-b:step"]
    # Non-final steps, per problem: positives (right 1, right 2, half-right 1) against negatives.
    # prm-a: .9 .8 .5 vs .3 .2 .6 -> 8 of 9 pairs; over both problems the same share.
    assert by_name["prm-a"].non_final.value == pytest.approx(8 / 9)
    # r_t: .2 .1 -.15 vs -.1 -.2 .3 -> 5/9; q_t: .2 .3 -.15 vs -.1 -.3 .15 -> 7/9.
    assert by_name["implicit-b:step"].non_final.value == pytest.approx(5 / 9)
    assert by_name["implicit-b:cumulative"].non_final.value == pytest.approx(7 / 9)
    # All steps add the finals (right: gold correct): prm-a .9 .8 .5 .7 vs .3 .2 .6 .1 .4 -> 19 of 20.
    assert by_name["prm-a"].all_steps.value == pytest.approx(19 / 20)
    # q_t .2 .3 .6 -.15 vs -.1 -.3 -.8 .15 .05 -> 5 + 5 + 5 + 2 of 20.
    assert by_name["implicit-b:cumulative"].all_steps.value == pytest.approx(17 / 20)
    # Paired differences from the first scorer.
    assert by_name["prm-a"].non_final_minus_first is None
    assert by_name["implicit-b:step"].non_final_minus_first.value == pytest.approx(5 / 9 - 8 / 9)
    assert by_name["implicit-b:cumulative"].non_final_minus_first.value == pytest.approx(7 / 9 - 8 / 9)
    for s in check.scorers:
        for interval in (s.non_final, s.all_steps):
            assert interval.ci_low <= interval.value <= interval.ci_high


def test_gold_steps_command(db_path):
    with Store(db_path) as store:
        _seed_gold_pool(store)
    runner = CliRunner()
    result = runner.invoke(app, ["gold-steps", "--db", str(db_path), "--model", "implicit-b", "--model", "prm-a",
                                 "--readout", "step", "--json", "--n-boot", "50"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert [s["scorer"] for s in shown["scorers"]] == ["implicit-b:step", "prm-a"]  # the named order
    assert shown["scorers"][1]["non_final_minus_first"]["value"] == pytest.approx(8 / 9 - 5 / 9)
    table = runner.invoke(app, ["gold-steps", "--db", str(db_path)])
    assert table.exit_code == 0 and "AUC non-final steps" in table.output and "0.889" in table.output
    bad = runner.invoke(app, ["gold-steps", "--db", str(db_path), "--readout", "sigmoid"])
    assert bad.exit_code != 0 and "--readout must be step or cumulative" in bad.output


def test_verifier_costs_query_puts_accuracy_next_to_cost(db_path):
    with Store(db_path) as store:
        _seed_gold_pool(store)
        store.query("UPDATE prm_models SET solution_tokens = 100, rollout_tokens = 800, training_tokens = 50 "
                    "WHERE model_id = 'prm-a'")
        store.query("UPDATE prm_models SET solution_tokens = 100, rollout_tokens = 0, training_tokens = 60 "
                    "WHERE model_id = 'implicit-b'")
        # Two evaluations of the implicit PRM (read-outs step, then cumulative), one of the PRM.
        for run, readout in (("run-step", "step"), ("run-cum", "cumulative"), ("run-prm", None)):
            store.insert_rows("runs", [{"run_id": run, "flow_name": "evaluate", "status": "completed",
                                        "config": json.dumps({"implicit_readout": readout or "cumulative"})}])
        rows = []
        for run, model, accuracy in (("run-step", "implicit-b", 0.5), ("run-cum", "implicit-b", 0.75),
                                     ("run-prm", "prm-a", 1.0)):
            for n in (1, 2):
                rows.append({"run_id": run, "pool_id": "pool", "dataset": "arith", "model_id": model,
                             "method": "prm_best_of_n", "aggregation": "min", "n": n, "accuracy": accuracy - n / 10,
                             "problems": 2, "ci_low": 0.0, "ci_high": 1.0})
            rows.append({"run_id": run, "pool_id": "pool", "dataset": "arith", "model_id": None, "method": "majority",
                         "aggregation": None, "n": 2, "accuracy": 0.25, "problems": 2, "ci_low": 0.0, "ci_high": 0.5})
        store.insert_rows("eval_results", rows, skip_existing=False)
        shown = store.saved_query("verifier_costs").as_dicts()
    # At the largest N (2): majority once, the implicit PRM per read-out, then the PRM; by total tokens.
    assert [(r["kind"], r["readout"], r["accuracy"], r["total_tokens"]) for r in shown] == [
        ("none", None, 0.25, 0), ("implicit", "cumulative", 0.55, 160), ("implicit", "step", 0.3, 160),
        ("prm", None, 0.8, 950)]
    assert all(r["n"] == 2 and r["pool"] == "arith/test" for r in shown)
