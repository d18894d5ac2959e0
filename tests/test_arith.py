"""The synthetic arith domain: determinism and exact gold step labels."""

from __future__ import annotations

import pytest

from tasks.arith import ArithDifficulty, generate_problem, gold_step_labels, problem_from_meta, reference_solution


def test_generation_is_deterministic_and_respects_knobs():
    d = ArithDifficulty(min_ops=3, max_ops=4, max_start=9, max_operand=4, ops="+-*")
    a = [generate_problem(i, seed=7, difficulty=d) for i in range(50)]
    b = [generate_problem(i, seed=7, difficulty=d) for i in range(50)]
    assert a == b
    assert a != [generate_problem(i, seed=8, difficulty=d) for i in range(50)]
    for p in a:
        assert 3 <= len(p.operations) <= 4
        assert p.answer == p.gold_values[-1] and all(v > 0 for v in p.gold_values)
        assert {op for op, _ in p.operations} <= set("+-*")


def test_reference_solution_is_all_correct():
    for i in range(30):
        p = generate_problem(i, difficulty=ArithDifficulty(ops="+-*", max_ops=4))
        assert gold_step_labels(p, reference_solution(p), solution_correct=True) == [True] * (len(p.operations) + 1)


def problem():
    # Tom has 5 apples, buys 3 more (8), gives away 2 (6).
    return problem_from_meta(
        "Tom has 5 apples. ...", "6", {"operations": [["+", 3], ["-", 2]], "given_numbers": [5, 3, 2], "gold_values": [8, 6]}
    )


@pytest.mark.parametrize(
    "steps, correct, expected",
    [
        (["5 + 3 = 8", "8 - 2 = 6", "The answer is 6."], True, [True, True, True]),
        # wrong arithmetic in step 1 poisons every later prefix
        (["5 + 3 = 9", "9 - 2 = 7", "The answer is 7."], False, [False, False, False]),
        # right arithmetic, wrong operation: 5 - 3 = 2 is not a quantity the problem needs
        (["5 - 3 = 2", "2 + 2 = 4", "The answer is 4."], False, [False, False, False]),
        # a number from nowhere (7) in step 2
        (["5 + 3 = 8", "8 - 7 = 1", "The answer is 1."], False, [True, False, False]),
        # all steps right but the final answer wrong
        (["5 + 3 = 8", "8 - 2 = 6", "The answer is 8."], False, [True, True, False]),
        # restating known quantities in words is fine; chained equations in one step are fine
        (["Tom has 5 apples and buys 3.", "5 + 3 = 8 and 8 - 2 = 6", "The answer is 6."], True, [True, True, True]),
        # using a gold value before deriving it is a jump, not a known quantity
        (["Tom has 6 apples now.", "The answer is 6."], True, [False, False]),
    ],
)
def test_gold_step_labels(steps, correct, expected):
    assert gold_step_labels(problem(), steps, correct) == expected


def test_invalid_knobs():
    with pytest.raises(ValueError):
        generate_problem(0, difficulty=ArithDifficulty(min_ops=3, max_ops=2))
    with pytest.raises(ValueError):
        generate_problem(0, difficulty=ArithDifficulty(ops="/"))
