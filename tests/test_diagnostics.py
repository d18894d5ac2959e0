"""Tests for tasks.diagnostics: AUC, Spearman, length bias and the paired bootstrap.

Expected values are computed by hand in the comments next to each case.
"""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import pytest

from tasks.diagnostics import PairedComparison, auc, length_bias, paired_bootstrap, spearman

# --------------------------------------------------------------------------------------------
# auc
# --------------------------------------------------------------------------------------------


def test_auc_perfect_and_reversed_separation():
    # Every correct item outscores every incorrect one: 2*2 pairs won of 4 -> 1; reversed: 0 of 4.
    assert auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0


def test_auc_counts_ties_as_half():
    # Positives 0.4, 0.8; negatives 0.1, 0.4. Pairs (pos, neg):
    # (0.4, 0.1) win 1, (0.4, 0.4) tie 1/2, (0.8, 0.1) win 1, (0.8, 0.4) win 1 -> 3.5 / 4 = 0.875.
    assert auc([0.1, 0.4, 0.4, 0.8], [False, True, False, True]) == 0.875
    # All scores equal: every one of the 2*3 pairs is a tie -> 3 / 6 = 0.5.
    assert auc([0.3] * 5, [True, False, True, False, False]) == 0.5


def test_auc_depends_only_on_order():
    # Positives 5, 100; negatives 1, 50 -> pairs (5,1) 1, (5,50) 0, (100,1) 1, (100,50) 1 -> 3/4.
    assert auc([1.0, 5.0, 50.0, 100.0], [False, True, False, True]) == 0.75


def test_auc_undefined_for_one_class():
    assert auc([0.1, 0.5, 0.9], [True, True, True]) is None
    assert auc([0.1, 0.5, 0.9], [False, False, False]) is None
    assert auc([], []) is None


def test_auc_rejects_bad_input():
    with pytest.raises(ValueError, match="length"):
        auc([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="finite"):
        auc([0.1, math.nan], [True, False])
    with pytest.raises(ValueError, match="finite"):
        auc([0.1, math.inf], [True, False])


# --------------------------------------------------------------------------------------------
# spearman and length_bias
# --------------------------------------------------------------------------------------------


def test_spearman_monotone():
    # Only ranks matter: y = 10^(x-1) has the same ranks as x -> 1; reversed ranks -> -1.
    assert spearman([1, 2, 3, 4], [1, 10, 100, 1000]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [8, 4, 2, 1]) == pytest.approx(-1.0)


def test_spearman_with_ties_uses_average_ranks():
    # x = [1, 2, 2, 3] -> ranks [1, 2.5, 2.5, 4]; y = [1, 3, 2, 4] -> ranks [1, 3, 2, 4]; means 2.5.
    # Deviations dx = [-1.5, 0, 0, 1.5], dy = [-1.5, 0.5, -0.5, 1.5].
    # sum dx*dy = 2.25 + 2.25 = 4.5; sum dx^2 = 4.5; sum dy^2 = 2.25+0.25+0.25+2.25 = 5.
    # r = 4.5 / sqrt(4.5 * 5) = sqrt(20.25 / 22.5) = sqrt(0.9).
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    # Ties on both sides: x = [1, 1, 2, 2] -> ranks [1.5, 1.5, 3.5, 3.5], dx = [-1, -1, 1, 1];
    # y = [1, 2, 2, 3] -> ranks [1, 2.5, 2.5, 4], dy = [-1.5, 0, 0, 1.5].
    # sum dx*dy = 1.5 + 1.5 = 3; sum dx^2 = 4; sum dy^2 = 4.5 -> r = 3 / sqrt(18) = 1 / sqrt(2).
    assert spearman([1, 1, 2, 2], [1, 2, 2, 3]) == pytest.approx(1 / math.sqrt(2))


def test_spearman_undefined_cases():
    assert spearman([1, 2, 3], [5, 5, 5]) is None  # constant side: zero rank variance
    assert spearman([7, 7], [1, 2]) is None
    assert spearman([1], [2]) is None  # fewer than 2 items
    assert spearman([], []) is None


def test_spearman_rejects_bad_input():
    with pytest.raises(ValueError, match="length"):
        spearman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        spearman([1, 2, math.nan], [1, 2, 3])


def test_length_bias():
    # Scores fall as steps grow -> -1; tokens are all equal -> undefined (None).
    bias = length_bias([0.9, 0.8, 0.7, 0.6], num_steps=[1, 2, 3, 4], num_tokens=[10, 10, 10, 10])
    assert bias["spearman_steps"] == pytest.approx(-1.0)
    assert bias["spearman_tokens"] is None
    assert set(bias) == {"spearman_steps", "spearman_tokens"}


# --------------------------------------------------------------------------------------------
# paired_bootstrap
# --------------------------------------------------------------------------------------------


def test_paired_bootstrap_identical_inputs():
    # Every difference is 0, so every resampled mean is 0: the interval collapses to 0 and no
    # bootstrap difference is > 0.
    values = [0.0, 1.0, 0.5, 1.0, 0.0]
    result = paired_bootstrap(values, values)
    assert result.items == 5
    assert result.difference == 0.0
    assert result.ci_low == result.ci_high == 0.0
    assert result.p_better == 0.0
    assert not result.better
    assert result.confidence == 0.95


def test_paired_bootstrap_better_on_every_item():
    # Differences are all 0.5 (exact in binary), so every resampled mean is exactly 0.5.
    # candidate mean = (1 + 0.5 + 1 + 0.75) / 4 = 0.8125; baseline mean = 1.25 / 4 = 0.3125.
    result = paired_bootstrap([1.0, 0.5, 1.0, 0.75], [0.5, 0.0, 0.5, 0.25])
    assert result.candidate_mean == 0.8125
    assert result.baseline_mean == 0.3125
    assert result.difference == 0.5
    assert result.ci_low == result.difference == result.ci_high
    assert result.p_better == 1.0
    assert result.better


def test_paired_bootstrap_one_win_in_forty_is_not_significant():
    # Differences: [1, 0 x 39]; a resample's mean is K/40 with K = copies of the winning problem.
    # P(K = 0) = (39/40)^40 = exp(40 ln 0.975) = exp(-1.0127) ~ 0.363 > 0.05, so over a third of
    # the bootstrap means are 0 and the 5% quantile is 0: ci_low = 0, not better.
    candidate = [1.0] + [0.5] * 39
    baseline = [0.0] + [0.5] * 39
    result = paired_bootstrap(candidate, baseline, confidence=0.95)
    assert result.difference == pytest.approx(1 / 40)
    assert result.ci_low == 0.0
    assert not result.better
    # p_better estimates 1 - 0.363 = 0.637 (binomial sd over 2000 resamples ~ 0.011).
    assert result.p_better == pytest.approx(0.637, abs=0.05)


def test_paired_bootstrap_ten_wins_no_losses_is_significant():
    # Differences: [1 x 10, 0 x 30]. A resample has mean 0 only if it misses all 10 winners:
    # P = (30/40)^40 = exp(40 ln 0.75) = exp(-11.5) ~ 1e-5, i.e. ~0.02 of 2000 resamples, far from
    # the 100 zeros needed to pull the 5% quantile down to 0. So ci_low > 0 and better.
    candidate = [1.0] * 10 + [0.0] * 30
    baseline = [0.0] * 40
    result = paired_bootstrap(candidate, baseline)
    assert result.difference == 0.25
    assert 0 < result.ci_low < result.difference < result.ci_high
    assert result.better
    assert result.p_better >= 0.99


def test_paired_bootstrap_symmetric_wins_and_losses():
    # 10 wins and 10 losses of equal size: difference 0, and the resampled means straddle 0.
    candidate = [1.0] * 10 + [0.0] * 10
    baseline = [0.0] * 10 + [1.0] * 10
    result = paired_bootstrap(candidate, baseline)
    assert result.difference == 0.0
    assert result.ci_low < 0 < result.ci_high
    assert not result.better


def test_paired_bootstrap_is_deterministic_for_a_seed():
    candidate = [0.1 * (i % 7) for i in range(30)]
    baseline = [0.05 * (i % 5) for i in range(30)]
    first = paired_bootstrap(candidate, baseline, seed=3)
    assert paired_bootstrap(candidate, baseline, seed=3) == first
    assert paired_bootstrap(candidate, baseline, seed=4) != first
    assert isinstance(first, PairedComparison)
    with pytest.raises(FrozenInstanceError):
        first.ci_low = 1.0  # type: ignore[misc]


def test_paired_bootstrap_many_items():
    # 1500 items -> resamples are drawn in more than one block; all differences are 1.
    result = paired_bootstrap([1.0] * 1500, [0.0] * 1500, n_boot=1000)
    assert result.ci_low == result.ci_high == 1.0
    assert result.p_better == 1.0


@pytest.mark.parametrize(
    ("candidate", "baseline", "kwargs", "match"),
    [
        ([], [], {}, "empty"),
        ([1.0, 2.0], [1.0], {}, "length"),
        ([1.0, math.nan], [1.0, 2.0], {}, "finite"),
        ([1.0], [0.0], {"confidence": 0.5}, "confidence"),
        ([1.0], [0.0], {"confidence": 1.0}, "confidence"),
        ([1.0], [0.0], {"confidence": 0.3}, "confidence"),
        ([1.0], [0.0], {"n_boot": 0}, "n_boot"),
    ],
)
def test_paired_bootstrap_rejects_bad_input(candidate, baseline, kwargs, match):
    with pytest.raises(ValueError, match=match):
        paired_bootstrap(candidate, baseline, **kwargs)


def test_clustered_auc_intervals_resample_whole_problems():
    from tasks.diagnostics import clustered_auc_intervals

    # Problem a: 0.9 (right) vs 0.1 (wrong); problem b: 0.6 (right) vs 0.7 (wrong).
    # AUC over both: 3 of 4 right-wrong pairs ordered = 0.75. A resample is {a, a} (AUC 1),
    # {b, b} (AUC 0) or {a, b} (0.75), so the 95% interval runs from 0 to 1.
    q = [0.9, 0.1, 0.6, 0.7]
    r = [0.9, 0.1, 0.8, 0.7]  # orders every pair in every resample: AUC 1, interval [1, 1]
    found = clustered_auc_intervals({"q": q, "r": r}, [True, False, True, False], ["a", "a", "b", "b"],
                                    differences=[("r", "q")], n_boot=2000)
    assert found["q"].value == 0.75 and (found["q"].ci_low, found["q"].ci_high) == (0.0, 1.0)
    assert (found["r"].value, found["r"].ci_low, found["r"].ci_high) == (1.0, 1.0, 1.0)
    # r - q per resample: 0, 1 or 0.25; point 0.25.
    assert found["r-q"].value == 0.25 and (found["r-q"].ci_low, found["r-q"].ci_high) == (0.0, 1.0)
    with pytest.raises(ValueError, match="cluster keys"):
        clustered_auc_intervals({"q": q}, [True, False, True, False], ["a", "b"])
