"""`prmf bench label`'s statistics on hand-built labels (the engine run itself is the bench)."""

from __future__ import annotations

from tasks.bench_label import _bootstrap_agreement, _per_problem


def labels(outcomes: dict[str, list[tuple[bool, bool | None]]]) -> dict:
    """problem -> [(he, gold), ...] as the bench stores them: (solution, step) -> (problem, he, gold)."""
    return {(f"{p}-s", i): (p, he, gold) for p, steps in outcomes.items() for i, (he, gold) in enumerate(steps)}


def test_agreement_counts_steps_with_gold_per_problem():
    a = labels({"p1": [(True, True), (False, False), (True, None)], "p2": [(True, False), (False, False)]})
    assert _per_problem(a) == {"p1": (2, 2), "p2": (1, 2)}  # the step without gold is not counted


def test_bootstrap_interval_and_paired_difference():
    a = labels({"p1": [(True, True), (False, False)], "p2": [(True, False), (True, False)]})  # 2 of 4
    b = labels({"p1": [(True, True), (True, False)], "p2": [(True, False), (False, False)]})  # 2 of 4
    perfect = labels({"p1": [(True, True)], "p2": [(False, False)]})
    alone = _bootstrap_agreement({"a": a, "perfect": perfect})
    point, (low, high) = alone["a"]
    assert point == 0.5 and 0.0 <= low <= 0.5 <= high <= 1.0 and low < high
    assert alone["perfect"] == (1.0, (1.0, 1.0))  # every resample agrees fully
    paired = _bootstrap_agreement({"a": a, "b": b, "naive": a}, baseline="naive")
    assert paired["naive"] == (0.0, (0.0, 0.0))
    # a agrees 2/2 on p1 and 0/2 on p2, b 1/2 on each: equal in total (difference 0), but a resample
    # drawing p1 more often favours a and one drawing p2 more often favours b.
    point, (low, high) = paired["b"]
    assert point == 0.0 and low < 0 < high
