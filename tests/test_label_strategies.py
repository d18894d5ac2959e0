"""Labelling strategies on hand-built rollout outcomes (no engine): the requests each makes, the
labels they imply, the monotone-assumption corner cases, and resuming from stored measurements."""

from __future__ import annotations

import pytest

from tasks.labelling.strategies import (
    Contradiction,
    Measurement,
    RolloutRequest,
    SolutionState,
    StepLabel,
    early_stop_schedule,
    infer_labels,
    strategy,
)

N = 8


class Outcomes:
    """Scripted rollouts: each prefix's outcomes (True = correct) are dealt in order."""

    def __init__(self, per_prefix: dict[int, list[bool]]):
        self.left = {k: list(v) for k, v in per_prefix.items()}
        self.dealt = 0

    def deal(self, step_index: int, n: int) -> int:
        outcomes, self.left[step_index] = self.left[step_index][:n], self.left[step_index][n:]
        assert len(outcomes) == n, f"script for prefix {step_index} ran out"
        self.dealt += n
        return sum(outcomes)


def run(name: str, state: SolutionState, outcomes: Outcomes, budget: int = N) -> list[RolloutRequest]:
    """Drive a strategy to completion; returns every request in order."""
    strat, made = strategy(name, budget), []
    while rounds := strat.requests(state):
        for request in rounds:
            made.append(request)
            state.observe(request.step_index, request.n, outcomes.deal(request.step_index, request.n))
    return made


def he(labels):
    return [label.he for label in labels]


def test_early_stop_schedule_doubles_to_the_budget():
    assert early_stop_schedule(8) == (2, 2, 4)
    assert early_stop_schedule(16) == (2, 2, 4, 8)
    assert early_stop_schedule(3) == (2, 1)
    assert early_stop_schedule(1) == (1,)


def test_naive_measures_every_non_final_prefix_with_the_full_budget():
    state = SolutionState(4, correct=False)
    outcomes = Outcomes({1: [True] * 2 + [False] * 6, 2: [False] * 8, 3: [False] * 8})
    made = run("naive", state, outcomes)
    assert made == [RolloutRequest(i, 8, 0) for i in (1, 2, 3)] and outcomes.dealt == 24
    labels, contradictions = infer_labels(state, N)
    assert labels == [StepLabel(1, True, 0.25, 8, "measured"), StepLabel(2, False, 0.0, 8, "measured"),
                      StepLabel(3, False, 0.0, 8, "measured"), StepLabel(4, False, 0.0, 1, "final")]
    assert contradictions == []


def test_early_stop_ends_a_prefix_at_its_first_correct_rollout():
    state = SolutionState(3, correct=False)
    # prefix 1: wrong, wrong | wrong, right -> stops after 4 rollouts; prefix 2: never right -> 2 + 2 + 4
    outcomes = Outcomes({1: [False, False, False, True], 2: [False] * 8})
    made = run("early_stop", state, outcomes)
    assert made == [RolloutRequest(1, 2, 0), RolloutRequest(2, 2, 0), RolloutRequest(1, 2, 1),
                    RolloutRequest(2, 2, 1), RolloutRequest(2, 4, 2)]
    labels, _ = infer_labels(state, N)
    assert labels[0] == StepLabel(1, True, 0.25, 4, "measured", early_stopped=True)  # SE with its actual n
    assert labels[1] == StepLabel(2, False, 0.0, 8, "measured", early_stopped=False)
    assert outcomes.dealt == 12  # naive: 16


def test_binary_search_finds_the_first_error_in_log_many_evaluations():
    # 8 steps, the true first error at step 5: HE 1 1 1 1 0 0 0, final wrong.
    truth = {i: [i < 5] * N for i in range(1, 8)}
    state = SolutionState(8, correct=False)
    made = run("binary_search", state, Outcomes(truth))
    assert [r.step_index for r in made] == [4, 6, 5]  # lo 0 hi 8 -> 4 good -> 6 bad -> 5 bad
    labels, contradictions = infer_labels(state, N)
    assert he(labels) == [True, True, True, True, False, False, False, False]
    assert [label.source for label in labels] == ["inferred"] * 3 + ["measured"] * 3 + ["inferred", "final"]
    assert [labels[i].implied_by for i in (0, 1, 2, 6)] == [4, 4, 4, 6]
    assert contradictions == []


def test_binary_search_when_the_first_step_is_already_wrong():
    state = SolutionState(8, correct=False)
    made = run("binary_search", state, Outcomes({i: [False] * N for i in range(1, 8)}))
    assert [r.step_index for r in made] == [4, 2, 1]
    labels, _ = infer_labels(state, N)
    assert he(labels) == [False] * 8
    assert [(label.source, label.implied_by) for label in labels[:7]] == [
        ("measured", None), ("measured", None), ("inferred", 2), ("measured", None),
        ("inferred", 4), ("inferred", 4), ("inferred", 4)]


def test_binary_search_when_only_the_final_step_is_wrong():
    state = SolutionState(5, correct=False)
    made = run("binary_search", state, Outcomes({i: [True] + [False] * 7 for i in range(1, 5)}))
    assert [r.step_index for r in made] == [2, 3, 4]  # lo climbs to 4; the final answer is the error
    labels, _ = infer_labels(state, N)
    assert he(labels) == [True, True, True, True, False]
    assert labels[0] == StepLabel(1, True, None, 0, "inferred", 2)


def test_a_correct_solution_needs_no_rollouts_under_binary_search():
    state = SolutionState(4, correct=True)
    assert run("binary_search", state, Outcomes({})) == []
    labels, _ = infer_labels(state, N)
    assert he(labels) == [True] * 4 and all(label.implied_by == 4 for label in labels[:3])


def test_a_reused_rollout_is_searched_after_its_parent_prefix_only():
    # A wrong rollout from prefix 3 of its parent became a 9-step solution; prefix 3 (shared with
    # the parent) had a correct rollout. The search is (3, 9), not (0, 9): 6 -> 4 -> 5.
    state = SolutionState(9, correct=False)
    state.observe(3, N, 2)
    state.reused_from = 3
    truth = {i: [i < 5] * N for i in range(4, 9)}
    made = run("binary_search", state, Outcomes(truth))
    assert [r.step_index for r in made] == [6, 4, 5]
    labels, _ = infer_labels(state, N)
    assert he(labels) == [True] * 4 + [False] * 5
    assert [labels[i].implied_by for i in (0, 1, 6, 7)] == [3, 3, 6, 6]  # the parent's prefix 3 proves 1..2


def test_a_reused_rollout_from_a_prefix_with_no_correct_rollout_needs_nothing():
    state = SolutionState(6, correct=False)
    state.observe(2, N, 0)
    state.reused_from = 2
    assert run("binary_search", state, Outcomes({})) == []
    labels, _ = infer_labels(state, N)
    assert he(labels)[2:] == [False] * 4 and {labels[i].implied_by for i in range(2, 5)} == {2}
    assert [label.source for label in labels[:2]] == ["open", "measured"]  # nothing implies step 1


def test_binary_search_with_early_stop_rounds():
    truth = {i: ([False, True] + [False] * 6) if i < 5 else [False] * N for i in range(1, 8)}
    state = SolutionState(8, correct=False)
    outcomes = Outcomes(truth)
    made = run("binary_search+early_stop", state, outcomes)
    # prefix 4: 2 rollouts, one right -> good; 6: 2 + 2 + 4 wrong -> bad; 5: 8 wrong -> bad
    assert [(r.step_index, r.n, r.round) for r in made] == [(4, 2, 0), (6, 2, 0), (6, 2, 1), (6, 4, 2), (5, 2, 0),
                                                           (5, 2, 1), (5, 4, 2)]
    assert outcomes.dealt == 18  # binary search alone: 24; naive: 56
    assert he(infer_labels(state, N)[0]) == [True] * 4 + [False] * 4


def test_root_rollouts_come_first_with_the_full_budget():
    state = SolutionState(3, correct=True)
    made = run("binary_search+root", state, Outcomes({0: [True, False] * 4}))
    assert made == [RolloutRequest(0, 8, 0)]
    assert state.measured[0] == Measurement(8, 4)
    labels, _ = infer_labels(state, N)
    assert [label.step_index for label in labels] == [1, 2, 3]  # the root is a measurement, not a step label


def test_a_correct_rollout_after_a_prefix_measured_wrong_is_a_contradiction():
    state = SolutionState(7, correct=False, measured={3: Measurement(4, 0), 5: Measurement(4, 1)})
    labels, contradictions = infer_labels(state, N)
    assert contradictions == [Contradiction(step_index=5, after=3)]
    assert labels[2] == StepLabel(3, False, 0.0, 4, "measured") and labels[4].he is True  # measured labels stand
    assert labels[3] == StepLabel(4, None, None, 0, "open")  # both rules apply: left unlabelled, not hidden
    assert labels[0].he is True and labels[0].implied_by == 5
    assert labels[5] == StepLabel(6, False, None, 0, "inferred", 3)


def test_a_correct_final_answer_after_a_wrong_prefix_is_a_contradiction():
    state = SolutionState(4, correct=True, measured={2: Measurement(8, 0)})
    labels, contradictions = infer_labels(state, N)
    assert contradictions == [Contradiction(4, 2)]
    assert labels[1].he is False and labels[1].source == "measured" and labels[2].source == "open"


def test_inferred_labels_never_overwrite_measured_ones():
    # A correct rollout from 6 implies HE = 1 for 1..6, but prefix 2 was measured with none correct.
    state = SolutionState(8, correct=False, measured={2: Measurement(4, 0), 6: Measurement(4, 2)})
    labels, _ = infer_labels(state, N)
    assert labels[1] == StepLabel(2, False, 0.0, 4, "measured")
    assert labels[0] == StepLabel(1, True, None, 0, "inferred", 6)


def test_resuming_from_stored_measurements_makes_the_same_requests():
    truth = {i: ([False, False, True] + [False] * 5) if i < 6 else [False] * N for i in range(1, 10)}
    whole = SolutionState(10, correct=False)
    full = run("binary_search+early_stop", whole, Outcomes(truth))
    for cut in range(len(full)):  # a run killed after `cut` stored rounds, then rerun
        resumed = SolutionState(10, correct=False)
        outcomes = Outcomes(truth)
        for request in full[:cut]:
            resumed.observe(request.step_index, request.n, outcomes.deal(request.step_index, request.n))
        assert full[:cut] + run("binary_search+early_stop", resumed, outcomes) == full
        assert infer_labels(resumed, N) == infer_labels(whole, N)


def test_unknown_strategy_names_and_budgets_are_refused():
    with pytest.raises(ValueError, match="unknown labelling strategy 'omega'"):
        strategy("omega", N)
    with pytest.raises(ValueError, match="at least 1"):
        strategy("naive", 0)
    with pytest.raises(ValueError, match="not a non-final prefix"):
        SolutionState(3, correct=False).observe(3, 1, 0)


def test_filter_names_problems_whose_solutions_are_all_correct_or_all_wrong():
    from tasks.labelling.labeller import Solution, filter_reasons

    def solution(problem: str, index: int, correct: bool) -> Solution:
        return Solution(f"{problem}-{index}", {"problem_id": problem}, ("a", "b"), ("h1", "h2"), correct)

    solutions = [solution("easy", 0, True), solution("easy", 1, True), solution("hard", 0, False),
                 solution("mixed", 0, True), solution("mixed", 1, False), solution("single", 0, False)]
    assert filter_reasons(solutions) == {"easy": "all_correct", "hard": "all_wrong", "single": "all_wrong"}
    assert strategy("binary_search+early_stop+root+filter", 4).name == "binary_search+early_stop+root+filter"
    with pytest.raises(ValueError, match="repeats"):
        strategy("naive+root+root", 4)
