"""Tests for tasks.evaluation: best-of-N selection, subsets, bootstrap, pool loading, ProcessBench.

Expected values are computed by hand in the comments next to each case.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.evaluation import (
    AGGREGATIONS,
    THRESHOLD_GRID,
    Candidate,
    MethodResult,
    PoolLineError,
    PoolProblem,
    aggregate,
    answer_key,
    best_of_n,
    bootstrap_ci,
    choose_threshold,
    earliest_error,
    evaluate_pool,
    load_pool,
    majority_vote,
    mean_accuracy,
    nested_subsets,
    processbench_f1,
    weighted_vote,
)


def cand(answer: str | None, correct: bool, steps: tuple[float, ...] | None = None, orm: float | None = None):
    return Candidate(answer=answer, correct=correct, step_scores=steps, outcome_score=orm)


# --------------------------------------------------------------------------------------------
# aggregate / answer_key
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("min", 0.2),  # min(0.5, 0.2, 0.8)
        ("last", 0.8),
        ("prod", 0.08),  # 0.5 * 0.2 * 0.8
        ("mean", 0.5),  # 1.5 / 3
    ],
)
def test_aggregate_hand_computed(how, expected):
    assert aggregate((0.5, 0.2, 0.8), how) == pytest.approx(expected)


def test_aggregate_single_step_is_that_step_for_every_aggregation():
    assert [aggregate([0.7], how) for how in AGGREGATIONS] == pytest.approx([0.7] * 4)
    assert AGGREGATIONS == ("min", "last", "prod", "mean")


def test_aggregate_rejects_empty_and_unknown():
    with pytest.raises(ValueError, match="empty"):
        aggregate((), "min")
    with pytest.raises(ValueError, match="unknown aggregation 'max'"):
        aggregate((0.5,), "max")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "key"),
    [
        ("1,000", "1000"),
        ("1000.0", "1000"),
        (" \\boxed{1000} ", "1000"),
        ("$1000$", "1000"),
        ("0.5", "1/2"),
        ("\\frac{1}{2}", "1/2"),
        ("-3", "-3"),
        ("  x  +\n y ", "x + y"),
        ("\\boxed{ x + y }", "x + y"),
        ("$\\boxed{\\frac{a}{b}}$", "\\frac{a}{b}"),
        ("\\boxed{a}+\\boxed{b}", "\\boxed{a}+\\boxed{b}"),  # not one box around everything
        (None, None),
        ("   ", None),
        ("\\boxed{}", None),
    ],
)
def test_answer_key(answer, key):
    assert answer_key(answer) == key


# --------------------------------------------------------------------------------------------
# Per-problem selection
# --------------------------------------------------------------------------------------------


def test_mean_accuracy_is_fraction_correct():
    assert mean_accuracy([cand("1", True), cand("2", False), cand("3", False), cand("1", True), cand("1", True)]) == 0.6
    with pytest.raises(ValueError, match="at least one candidate"):
        mean_accuracy([])


def test_majority_groups_numerically_equal_answers():
    # "1,000", "1000" and "1000.0" are one group of 3; "7" has 2 votes.
    cands = [cand("7", False), cand("1,000", True), cand("7", False), cand("1000", True), cand("1000.0", True)]
    assert majority_vote(cands) is True
    # Without the numeric canonicalisation "7" (2 votes) would beat every spelling of 1000 (1 vote).
    assert majority_vote(cands[:4]) is False  # now 2-2: "7" appears first


def test_majority_tie_goes_to_group_seen_first():
    assert majority_vote([cand("7", False), cand("5", True), cand("5", True), cand("7", False)]) is False
    assert majority_vote([cand("5", True), cand("7", False), cand("7", False), cand("5", True)]) is True


def test_majority_ignores_missing_answers():
    # Three no-answer candidates do not form a group: the lone "5" wins.
    assert majority_vote([cand(None, False), cand(None, False), cand("  ", False), cand("5", True)]) is True
    assert majority_vote([cand(None, False), cand(None, True)]) is False  # no votes at all


def test_majority_group_correctness_is_its_first_member():
    assert majority_vote([cand("5", True), cand("5", False)]) is True
    assert majority_vote([cand("5", False), cand("5", True)]) is False


def test_best_of_n_picks_highest_score_and_disagrees_with_majority():
    cands = [cand("7", False), cand("7", False), cand("5", True)]
    assert majority_vote(cands) is False
    assert best_of_n(cands, [0.2, 0.3, 0.9]) is True
    assert best_of_n(cands, [0.2, 0.95, 0.9]) is False


def test_best_of_n_tie_goes_to_earliest_and_can_pick_no_answer():
    assert best_of_n([cand("1", False), cand("2", True), cand("3", False)], [0.5, 0.9, 0.9]) is True
    assert best_of_n([cand("1", False), cand("3", False), cand("2", True)], [0.5, 0.9, 0.9]) is False
    assert best_of_n([cand(None, False), cand("2", True)], [0.99, 0.5]) is False
    with pytest.raises(ValueError, match="2 scores for 3 candidates"):
        best_of_n([cand("1", True)] * 3, [0.1, 0.2])


def test_weighted_vote_sums_scores_per_answer():
    cands = [cand("7", False), cand("7", False), cand("5", True)]
    # "7": 0.2 + 0.3 = 0.5 < "5": 0.9 -> correct, although majority picks "7".
    assert weighted_vote(cands, [0.2, 0.3, 0.9]) is True
    # "7": 0.5 + 0.5 = 1.0 > "5": 0.9 -> wrong, although best-of-N picks the 0.9 "5".
    assert weighted_vote(cands, [0.5, 0.5, 0.9]) is False
    assert best_of_n(cands, [0.5, 0.5, 0.9]) is True


def test_weighted_vote_merges_equal_numbers_ties_and_missing_answers():
    # "1,000" + "1000": 0.3 + 0.3 = 0.6 > "12": 0.5.
    assert weighted_vote([cand("1,000", True), cand("12", False), cand("1000", True)], [0.3, 0.5, 0.3]) is True
    # Tie 0.4 vs 0.4: the group seen first wins.
    assert weighted_vote([cand("5", True), cand("7", False)], [0.4, 0.4]) is True
    assert weighted_vote([cand("7", False), cand("5", True)], [0.4, 0.4]) is False
    # The no-answer candidate's 5.0 counts for nothing.
    assert weighted_vote([cand(None, False), cand("5", True), cand("7", False)], [5.0, 0.1, 0.05]) is True
    assert weighted_vote([cand(None, True)], [1.0]) is False


# --------------------------------------------------------------------------------------------
# nested_subsets / bootstrap_ci
# --------------------------------------------------------------------------------------------


def test_nested_subsets_pinned_and_deterministic():
    # sha256-based: these exact subsets must come out on every machine and Python run.
    assert nested_subsets(4, [1, 2, 3, 4], "a") == {1: [2], 2: [1, 2], 3: [1, 2, 3], 4: [0, 1, 2, 3]}
    assert nested_subsets(4, [1, 2, 3, 4], "b") == {1: [0], 2: [0, 3], 3: [0, 2, 3], 4: [0, 1, 2, 3]}
    assert nested_subsets(16, [1, 4, 8], "p", seed=3) == nested_subsets(16, [1, 4, 8], "p", seed=3)


def test_nested_subsets_are_nested_and_depend_on_key_and_seed():
    ns = [1, 2, 4, 8, 16]
    for key in [f"problem-{i}" for i in range(20)]:
        subsets = nested_subsets(16, ns, key)
        assert [len(subsets[n]) for n in ns] == ns
        assert subsets[16] == list(range(16))
        for small, large in zip(ns, ns[1:]):
            assert set(subsets[small]) < set(subsets[large])
    by_key = {tuple(nested_subsets(16, [4], f"k{i}")[4]) for i in range(10)}
    by_seed = {tuple(nested_subsets(16, [4], "k", seed=s)[4]) for s in range(10)}
    assert len(by_key) > 5 and len(by_seed) > 5


def test_nested_subsets_rejects_n_out_of_range():
    with pytest.raises(ValueError, match=r"N=5 is larger than the 4 candidates of problem 'q7'"):
        nested_subsets(4, [1, 5], "q7")
    with pytest.raises(ValueError, match="at least 1"):
        nested_subsets(4, [0], "q7")


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    values = [1.0] * 50 + [0.0] * 50  # mean 0.5, standard error 0.05
    low, high = bootstrap_ci(values, seed=7)
    assert low < 0.5 < high
    # Normal approximation: 0.5 -/+ 1.96 * 0.05 = 0.402 / 0.598.
    assert 0.37 < low < 0.44 and 0.56 < high < 0.63
    assert bootstrap_ci(values, seed=7) == (low, high)
    assert bootstrap_ci(values, seed=8) != (low, high)
    narrow = bootstrap_ci(values, seed=7, alpha=0.5)
    assert low < narrow[0] < 0.5 < narrow[1] < high


def test_bootstrap_ci_edge_cases():
    assert bootstrap_ci([0.25]) == (0.25, 0.25)
    assert bootstrap_ci([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3))
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([])


# --------------------------------------------------------------------------------------------
# evaluate_pool
# --------------------------------------------------------------------------------------------

# Key "a": N=1 -> [2], N=2 -> [1, 2] (pinned above). Majority picks the wrong "7"; the PRM finds "5".
#   idx answer  ok  steps        min  last  prod  mean   orm
#   0   "7"     F   (0.9, 0.3)   .3   .3    .27   .6     .1
#   1   "7"     F   (0.4, 0.4)   .4   .4    .16   .4     .2
#   2   "7"     F   (0.2, 0.9)   .2   .9    .18   .55    .3
#   3   "5"     T   (0.8, 0.7)   .7   .7    .56   .75    .9
# N=4: pass@1 .25; majority F; orm -> 3 T; prm best: min 3 T, last 2 F, prod 3 T, mean 3 T;
#      weighted "7" vs "5": min .9>.7, last 1.6>.7, prod .61>.56, mean 1.55>.75 -> all F.
# N=1, N=2: only wrong "7"s -> every method 0.
PROBLEM_A = [
    cand("7", False, (0.9, 0.3), 0.1),
    cand("7", False, (0.4, 0.4), 0.2),
    cand("7", False, (0.2, 0.9), 0.3),
    cand("5", True, (0.8, 0.7), 0.9),
]
# Key "b": N=1 -> [0], N=2 -> [0, 3]. One-step scores, so every aggregation agrees.
#   idx answer   ok  step  orm
#   0   "1,000"  T   .6    .5
#   1   None     F   .99   .99   (highest scores but no answer: best-of-N falls for it)
#   2   "1000"   T   .5    .4
#   3   "12"     F   .95   .6
# N=4: pass@1 .5; majority "1000" (2) T; orm -> 1 F; prm best -> 1 F; weighted 1.1 > .95 T.
# N=2: pass@1 .5; majority 1-1 tie, "1,000" first T; orm .6 > .5 F; prm .95 F; weighted .95 > .6 F.
# N=1: candidate 0, correct -> every method 1.
PROBLEM_B = [
    cand("1,000", True, (0.6,), 0.5),
    cand(None, False, (0.99,), 0.99),
    cand("1000", True, (0.5,), 0.4),
    cand("12", False, (0.95,), 0.6),
]


def accuracies(results: list[MethodResult]) -> dict[tuple[str, str | None, int], float]:
    return {(r.method, r.aggregation, r.n): r.accuracy for r in results}


def test_evaluate_pool_hand_built():
    results = evaluate_pool([PROBLEM_A, PROBLEM_B], ns=[1, 2, 4], keys=["a", "b"])
    assert len(results) == 3 * (2 + 1 + 2 * 4)
    assert all(r.problems == 2 for r in results)
    got = accuracies(results)
    # Average of problem A and problem B values from the tables above.
    expected_n4 = {
        ("pass@1", None): (0.25 + 0.5) / 2,
        ("majority", None): (0 + 1) / 2,
        ("orm_best_of_n", None): (1 + 0) / 2,
        ("prm_best_of_n", "min"): (1 + 0) / 2,
        ("prm_best_of_n", "last"): (0 + 0) / 2,
        ("prm_best_of_n", "prod"): (1 + 0) / 2,
        ("prm_best_of_n", "mean"): (1 + 0) / 2,
        **{("prm_weighted_vote", how): (0 + 1) / 2 for how in AGGREGATIONS},
    }
    expected_n2 = {key: 0.0 for key in expected_n4} | {("pass@1", None): (0 + 0.5) / 2, ("majority", None): 0.5}
    expected_n1 = {key: 0.5 for key in expected_n4}
    for n, expected in [(1, expected_n1), (2, expected_n2), (4, expected_n4)]:
        assert {key: got[(*key, n)] for key in expected} == pytest.approx(expected), n
    # Order: per N, pass@1, majority, orm, then best-of-N / weighted vote per aggregation.
    assert [(r.method, r.aggregation) for r in results[:5]] == [
        ("pass@1", None),
        ("majority", None),
        ("orm_best_of_n", None),
        ("prm_best_of_n", "min"),
        ("prm_weighted_vote", "min"),
    ]
    # Per-problem values 0 and 1: bootstrap means are 0, 0.5 or 1, so the 95% CI is [0, 1].
    majority4 = next(r for r in results if r.method == "majority" and r.n == 4)
    assert (majority4.ci_low, majority4.ci_high) == (0.0, 1.0)
    # All-zero values give a degenerate interval.
    orm2 = next(r for r in results if r.method == "orm_best_of_n" and r.n == 2)
    assert (orm2.accuracy, orm2.ci_low, orm2.ci_high) == (0.0, 0.0, 0.0)


def test_a_method_never_vanishes_when_some_candidates_lack_scores():
    # Problem b's last candidate has no ORM score: an error naming it, not a table without the ORM.
    partial = [PROBLEM_A, [*PROBLEM_B[:3], cand("12", False, (0.95,), None)]]
    with pytest.raises(ValueError, match=r"1 of 8 candidates have no outcome \(ORM\) score: b#3"):
        evaluate_pool(partial, [4], ["a", "b"])
    partial_prm = [[*PROBLEM_A[:3], cand(PROBLEM_A[3].answer, PROBLEM_A[3].correct, None, 0.5)], PROBLEM_B]
    with pytest.raises(ValueError, match=r"step \(PRM\) scores: a#3"):
        evaluate_pool(partial_prm, [4], ["a", "b"])
    # No candidate scored at all: the scored methods are simply not applicable.
    plain = [[cand(c.answer, c.correct) for c in problem] for problem in (PROBLEM_A, PROBLEM_B)]
    results = evaluate_pool(plain, [4, 4], ["a", "b"])  # a repeated N is evaluated once
    assert [(r.method, r.n, r.accuracy) for r in results] == [("pass@1", 4, 0.375), ("majority", 4, 0.5)]


def test_unscored_leading_steps_are_skipped_and_last_is_the_final_step():
    # A truncated candidate: its first two steps were not scored (None), the final step was.
    scores = (None, None, 0.9, 0.3)
    assert aggregate(scores, "last") == 0.3  # the final step, not "the last step that fit"
    assert aggregate(scores, "min") == 0.3
    assert aggregate(scores, "prod") == pytest.approx(0.27)  # 0.9 * 0.3
    assert aggregate(scores, "mean") == pytest.approx(0.6)  # (0.9 + 0.3) / 2
    with pytest.raises(ValueError, match="final step has no score"):
        aggregate((0.5, None), "last")
    with pytest.raises(ValueError, match="empty"):
        aggregate((None, None), "min")


def test_evaluate_pool_errors():
    with pytest.raises(ValueError, match="1 keys for 2 problems"):
        evaluate_pool([PROBLEM_A, PROBLEM_B], [1], ["a"])
    with pytest.raises(ValueError, match="N=4 is larger than the 3 candidates of problem 'b'"):
        evaluate_pool([PROBLEM_A, PROBLEM_B[:3]], [1, 4], ["a", "b"])
    with pytest.raises(ValueError, match="empty pool"):
        evaluate_pool([], [1], [])


# --------------------------------------------------------------------------------------------
# load_pool
# --------------------------------------------------------------------------------------------

POOL_LINES: list[bytes] = [
    b'{"question": "Q1", "answer": "5", "responses": ["a", "b"], "scores": [[0.9, 0.1], [0.5]],'
    b' "correct": [true, false], "extra": 1}',  # 1 good
    b"   ",  # 2 blank: skipped silently
    b"{not json",  # 3
    b"[1, 2]",  # 4 not an object
    b'{"question": "Q", "answer": "1"}',  # 5 missing responses
    b'{"question": 3, "answer": "1", "responses": ["a"]}',  # 6 question not a string
    b'{"question": "Q", "answer": "1", "responses": ["a", "b"], "scores": [0.5]}',  # 7 scores length
    b'{"question": "Q", "answer": "1", "responses": ["a"], "correct": [true, false]}',  # 8 correct length
    b'{"question": "Q", "answer": "1", "responses": ["a"], "scores": [NaN]}',  # 9 non-finite
    b'{"question": "Q10", "answer": 1000, "responses": ["x", "y", "z"], "scores": [0.25, 1, 0.75]}',  # 10 good
    b'{"question": "Q", "answer": "1", "responses": []}',  # 11 no responses
    b'{"question": "Q", "answer": "1", "responses": ["a"], "correct": ["yes"]}',  # 12 correct not bool
    b'{"question": "Q", "answer": "1", "responses": ["a"], "scores": [[]]}',  # 13 empty step list
    b'{"question": "Q", "answer": true, "responses": ["a"]}',  # 14 answer a boolean
    b'{"question": "Q", "answer": "1", "responses": ["\xff\xfe"]}',  # 15 invalid UTF-8
    b'{"question": "Q16", "answer": 2.5, "responses": ["r"], "scores": null, "correct": [true]}',  # 16 good
    b'{"question": "Q", "answer": "1", "responses": ["a", 7]}',  # 17 response not a string
    b'{"question": "Q", "answer": "1", "responses": ["a"], "scores": [[0.5, Infinity]]}',  # 18 non-finite step
]


def test_load_pool_keeps_good_lines_and_reports_bad_ones(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b"\n".join(POOL_LINES) + b"\n")
    problems, errors = load_pool(path)

    assert problems == [
        PoolProblem(
            line=1,
            question="Q1",
            gold="5",
            responses=("a", "b"),
            scores=((0.9, 0.1), (0.5,)),
            correct=(True, False),
        ),
        PoolProblem(
            line=10,
            question="Q10",
            gold="1000",
            responses=("x", "y", "z"),
            scores=((0.25,), (1.0,), (0.75,)),
            correct=None,
        ),
        PoolProblem(line=16, question="Q16", gold="2.5", responses=("r",), scores=None, correct=(True,)),
    ]
    reasons = {error.line: error.reason for error in errors}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 17, 18]
    assert reasons[3].startswith("invalid JSON")
    assert reasons[4] == "expected a JSON object, got array"
    assert reasons[5] == "missing field 'responses'"
    assert reasons[6] == "'question' must be a non-empty string, got number"
    assert reasons[7] == "'scores' has 1 entries for 2 responses"
    assert reasons[8] == "'correct' has 2 entries for 1 responses"
    assert reasons[9] == "scores[0] is not finite: nan"
    assert reasons[11] == "'responses' must be a non-empty array, got array"
    assert reasons[12] == "correct[0] must be a boolean, got string"
    assert reasons[13] == "scores[0] is an empty list of step scores"
    assert reasons[14] == "'answer' must be a string or a number, got boolean"
    assert reasons[15] == "not valid UTF-8"
    assert reasons[17] == "responses[1] must be a string, got number"
    assert reasons[18] == "scores[0][1] is not finite: inf"
    assert str(errors[0]) == f"{path}:3: {reasons[3]}"
    assert errors[0] == PoolLineError(line=3, reason=reasons[3], path=str(path))


def test_load_pool_missing_file(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_pool(missing)


# --------------------------------------------------------------------------------------------
# ProcessBench
# --------------------------------------------------------------------------------------------


def test_earliest_error():
    assert earliest_error([0.9, 0.4, 0.1], 0.5) == 1
    assert earliest_error([0.9, 0.6], 0.5) == -1
    assert earliest_error([0.5], 0.5) == -1  # a score equal to the threshold is not an error
    assert earliest_error([], 0.5) == -1


# Hand-built ProcessBench set (label = first wrong step, -1 = all steps right).
PB_SCORES = [
    [0.9, 0.2, 0.8],  # label 1: found for 0.2 < t <= 0.9
    [0.9, 0.8, 0.3],  # label 2: found for 0.3 < t <= min(0.9, 0.8) = 0.8
    [0.7, 0.6],  # label -1: right for t <= 0.6
    [0.4, 0.9],  # label -1: right for t <= 0.4
    [0.3, 0.9],  # label 1: never (step 0 scores lower than step 1)
]
PB_LABELS = [1, 2, -1, -1, 1]


def test_processbench_f1_hand_computed():
    predictions = [earliest_error(scores, 0.5) for scores in PB_SCORES]
    assert predictions == [1, 2, -1, 0, 0]
    metrics = processbench_f1(predictions, PB_LABELS)
    # Erroneous: samples 0, 1 right, 4 wrong -> 2/3. Correct: sample 2 right, 3 wrong -> 1/2.
    # F1 = 2 * (2/3) * (1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7.
    assert metrics == pytest.approx(
        {"error_accuracy": 2 / 3, "correct_accuracy": 1 / 2, "f1": 4 / 7, "error_samples": 3, "correct_samples": 2}
    )
    # Predicting "no error" everywhere: error accuracy 0 -> F1 0.
    assert processbench_f1([-1] * 5, PB_LABELS)["f1"] == 0.0
    assert processbench_f1([-1] * 5, PB_LABELS)["correct_accuracy"] == 1.0


def test_processbench_f1_errors():
    with pytest.raises(ValueError, match="2 predictions for 1 labels"):
        processbench_f1([0, 1], [0])
    with pytest.raises(ValueError, match="needs erroneous and correct samples, got 0 and 2"):
        processbench_f1([-1, -1], [-1, -1])
    with pytest.raises(ValueError, match="got -2"):
        processbench_f1([0, 0], [-2, -1])


def test_choose_threshold_hand_computed():
    # Erroneous right (of 3): 2 for 0.3 < t <= 0.8. Correct right (of 2): 2 for t <= 0.4, 1 up to 0.6.
    # Best: 0.3 < t <= 0.4 -> 2/3 and 1 -> F1 = 2 * (2/3) / (5/3) = 0.8. Smallest such grid value: 0.35.
    threshold, metrics = choose_threshold(PB_SCORES, PB_LABELS)
    assert threshold == 0.35
    assert metrics == pytest.approx(
        {"error_accuracy": 2 / 3, "correct_accuracy": 1.0, "f1": 0.8, "error_samples": 3, "correct_samples": 2}
    )
    # Candidates: 0.3 -> 1/3 and 1 -> F1 0.5; 0.4 -> 0.8; 0.5 -> 4/7.
    assert choose_threshold(PB_SCORES, PB_LABELS, candidates=[0.5, 0.3, 0.4])[0] == 0.4
    # 0.35 and 0.4 tie at 0.8: the smaller wins.
    assert choose_threshold(PB_SCORES, PB_LABELS, candidates=[0.4, 0.35])[0] == 0.35
    # Only one step score in (0.3, 0.4]: it is tried as a threshold without the grid.
    assert choose_threshold(PB_SCORES, PB_LABELS, candidates=[0.4, 0.1])[0] == 0.4
    assert THRESHOLD_GRID[0] == 0.05 and THRESHOLD_GRID[-1] == 0.95 and len(THRESHOLD_GRID) == 19


def test_choose_threshold_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(30):
        score_lists = [list(np.round(rng.random(rng.integers(1, 6)), 1)) for _ in range(25)]
        labels = [int(rng.integers(-1, len(scores) + 1)) for scores in score_lists]  # includes out-of-range
        labels[0], labels[1] = -1, 0
        threshold, metrics = choose_threshold(score_lists, labels)
        tried = sorted(set(THRESHOLD_GRID) | {s for scores in score_lists for s in scores})
        f1s = [processbench_f1([earliest_error(s, t) for s in score_lists], labels)["f1"] for t in tried]
        best = max(f1s)
        assert metrics["f1"] == best
        assert threshold == tried[f1s.index(best)]


def test_choose_threshold_errors():
    with pytest.raises(ValueError, match="2 score lists for 1 labels"):
        choose_threshold([[0.5], [0.5]], [0])
    with pytest.raises(ValueError, match="finite"):
        choose_threshold([[0.5], [math.nan]], [0, -1])


def test_results_table_flags_a_selector_worse_than_pass_at_1():
    from tasks.best_of_n import PoolEvaluation, results_table

    results = (MethodResult("pass@1", None, 4, 0.5, 10, 0.4, 0.6), MethodResult("majority", None, 4, 0.7, 10, 0.4, 0.9),
               MethodResult("prm_best_of_n", "min", 4, 0.3, 10, 0.1, 0.6), MethodResult("pass@1", None, 1, 0.5, 10, 0.4, 0.6),
               MethodResult("prm_best_of_n", "min", 1, 0.6, 10, 0.3, 0.9))
    columns, rows = results_table(PoolEvaluation("p", "arith", "validation", 10, "prm-x", None, results))
    notes = {row[0]: row[columns.index("note")] for row in rows}
    # Judged at the largest N: 0.3 < 0.5 is flagged (though it beat pass@1 at N=1); 0.7 is not.
    assert notes == {"pass@1": "", "majority": "", "prm_best_of_n (min)": "worse than pass@1 at N=4"}
