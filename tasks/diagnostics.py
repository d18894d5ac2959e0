"""Statistics for judging verifiers: ranking quality, length bias and paired comparisons.

* :func:`auc`              -- ROC AUC of a score against binary correctness (Mann-Whitney U).
* :func:`spearman`         -- Spearman rank correlation with average ranks for ties.
* :func:`length_bias`      -- Spearman correlation of a score with solution length (steps, tokens);
  a verifier that mostly rewards short (or long) solutions shows a large absolute value.
* :func:`paired_bootstrap` -- is a candidate verifier better than a baseline on the same problems?
  Resamples problems, so per-problem difficulty cancels in the paired difference.

Everything here is pure: no model, no database.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Bootstrap resamples are drawn in blocks of about this many indices, to bound memory.
_BLOCK_ELEMENTS = 1 << 20


def _finite_array(values: Sequence[float], name: str) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    if data.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of numbers")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{name} must be finite (no NaN or infinity)")
    return data


def _paired(x: Sequence[float], y: Sequence[float], x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    if len(x) != len(y):
        raise ValueError(f"{x_name} and {y_name} differ in length: {len(x)} != {len(y)}")
    return _finite_array(x, x_name), _finite_array(y, y_name)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of the ranks they span. O(n log n)."""
    n = values.size
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(starts_group)
    ends = np.r_[starts[1:], n]  # exclusive
    # A group at sorted positions start..end-1 holds ranks start+1..end, whose mean is this:
    group_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(n, dtype=float)
    ranks[order] = group_rank[np.cumsum(starts_group) - 1]
    return ranks


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """ROC AUC: the probability that a random correct item scores higher than a random incorrect
    one, ties counting 1/2; i.e. Mann-Whitney U / (n_pos * n_neg), from average ranks.

    None when all items are of one class (undefined). Raises ValueError when the lengths differ or
    a score is not finite.
    """
    if len(scores) != len(labels):
        raise ValueError(f"scores and labels differ in length: {len(scores)} != {len(labels)}")
    data = _finite_array(scores, "scores")
    positive = np.asarray(labels, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # Rank sum of the positives minus its minimum possible value counts (pos, neg) pairs won.
    u = float(_average_ranks(data)[positive].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation: the Pearson correlation of the average ranks (ties share ranks).

    None when there are fewer than 2 items or either side is constant (the correlation is
    undefined). Raises ValueError when the lengths differ or a value is not finite.
    """
    xs, ys = _paired(x, y, "x", "y")
    if xs.size < 2 or np.all(xs == xs[0]) or np.all(ys == ys[0]):
        return None
    rx = _average_ranks(xs)
    ry = _average_ranks(ys)
    rx -= rx.mean()
    ry -= ry.mean()
    r = float(rx @ ry) / math.sqrt(float(rx @ rx) * float(ry @ ry))
    return max(-1.0, min(1.0, r))  # rounding may step just outside [-1, 1]


def length_bias(
    scores: Sequence[float], num_steps: Sequence[float], num_tokens: Sequence[float]
) -> dict[str, float | None]:
    """Spearman correlation of a verifier's scores with solution length, in steps and in tokens.

    Returns ``{"spearman_steps": ..., "spearman_tokens": ...}`` (None where undefined, see
    :func:`spearman`).
    """
    return {"spearman_steps": spearman(scores, num_steps), "spearman_tokens": spearman(scores, num_tokens)}


@dataclass(frozen=True)
class PairedComparison:
    """A paired bootstrap comparison of a candidate against a baseline over the same ``items``.

    ``difference`` is mean(candidate - baseline). ``ci_low`` is the ``1 - confidence`` quantile and
    ``ci_high`` the ``confidence`` quantile of the bootstrap differences: each is a one-sided bound
    at level ``confidence``, so [ci_low, ci_high] together is a two-sided ``2*confidence - 1``
    interval (90% for the default 0.95). ``p_better`` is the fraction of bootstrap differences
    above 0.
    """

    items: int
    candidate_mean: float
    baseline_mean: float
    difference: float
    ci_low: float
    ci_high: float
    p_better: float
    confidence: float

    @property
    def better(self) -> bool:
        """The candidate is better at one-sided level ``1 - confidence``: ``ci_low > 0``."""
        return self.ci_low > 0


def paired_bootstrap(
    candidate: Sequence[float],
    baseline: Sequence[float],
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> PairedComparison:
    """Paired bootstrap of mean(candidate - baseline): items (problems) are resampled with
    replacement, keeping each item's two values together. Deterministic for a seed.

    Raises ValueError for empty input, different lengths, non-finite values, ``confidence``
    outside (0.5, 1) or ``n_boot < 1``.
    """
    cand, base = _paired(candidate, baseline, "candidate", "baseline")
    if cand.size == 0:
        raise ValueError("cannot compare empty lists of values")
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    diff = cand - base
    n = diff.size
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ELEMENTS // n)
    boots = np.concatenate(
        [diff[rng.integers(0, n, size=(min(block, n_boot - i), n))].mean(axis=1) for i in range(0, n_boot, block)]
    )
    low, high = np.quantile(boots, [1 - confidence, confidence])
    return PairedComparison(
        items=n,
        candidate_mean=float(cand.mean()),
        baseline_mean=float(base.mean()),
        difference=float(diff.mean()),
        ci_low=float(low),
        ci_high=float(high),
        p_better=float(np.mean(boots > 0)),
        confidence=confidence,
    )


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile-bootstrap interval (None: undefined on the data)."""

    value: float | None
    ci_low: float | None
    ci_high: float | None


def clustered_auc_intervals(
    scores: dict[str, Sequence[float]],
    labels: Sequence[bool],
    clusters: Sequence[str],
    differences: Sequence[tuple[str, str]] = (),
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Interval]:
    """AUC of each score against ``labels`` with a two-sided ``confidence`` interval from a
    cluster bootstrap: whole clusters (problems) are resampled with replacement, because steps of
    one problem are not independent. ``differences`` (a, b) add ``"a-b"``: the paired AUC
    difference on the same resamples. A resample with one class only is skipped.
    """
    y = np.asarray(labels, dtype=bool)
    columns = {name: _finite_array(values, name) for name, values in scores.items()}
    for name, values in columns.items():
        if values.size != y.size:
            raise ValueError(f"{name} has {values.size} values for {y.size} labels")
    if len(clusters) != y.size:
        raise ValueError(f"got {len(clusters)} cluster keys for {y.size} labels")
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(clusters):
        groups.setdefault(key, []).append(index)
    members = [np.asarray(g) for g in groups.values()]
    rng = np.random.default_rng(seed)
    boots: dict[str, list[float]] = {name: [] for name in [*columns, *(f"{a}-{b}" for a, b in differences)]}
    for _ in range(n_boot):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(members), size=len(members))])
        sample = {name: auc(values[rows], y[rows]) for name, values in columns.items()}
        if any(v is None for v in sample.values()):
            continue
        for name, value in sample.items():
            boots[name].append(value)
        for a, b in differences:
            boots[f"{a}-{b}"].append(sample[a] - sample[b])
    point = {name: auc(values, y) for name, values in columns.items()}
    for a, b in differences:
        point[f"{a}-{b}"] = None if point[a] is None or point[b] is None else point[a] - point[b]
    tail = (1 - confidence) / 2
    found = {}
    for name, values in boots.items():
        if values and point[name] is not None:
            low, high = np.quantile(values, [tail, 1 - tail])
            found[name] = Interval(point[name], float(low), float(high))
        else:
            found[name] = Interval(point[name], None, None)
    return found
