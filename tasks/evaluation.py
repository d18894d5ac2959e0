"""Evaluation math for process reward models: best-of-N selection and ProcessBench metrics.

Best-of-N (as in Math-Shepherd and "Let's verify step by step"): each problem has a pool of sampled
candidate solutions; a selection method picks one answer per problem and the accuracy is the
fraction of problems whose picked answer is correct. Methods:

* ``pass@1``            -- expected accuracy of one random candidate (fraction correct).
* ``majority``          -- self-consistency: the most frequent final answer.
* ``orm_best_of_n``     -- the candidate with the highest outcome (ORM) score.
* ``prm_best_of_n``     -- the candidate with the highest aggregated PRM step score.
* ``prm_weighted_vote`` -- answers vote with the sum of their aggregated PRM scores.

For each N the candidates are a deterministic random subset of each problem's pool; subsets are
nested (N=4 contains N=2), so curves over N are not noisy from re-sampling. Accuracies come with a
percentile-bootstrap confidence interval over problems.

ProcessBench: a PRM predicts the first wrong step as the first step whose score is below a
threshold (-1 = no wrong step); the score is the harmonic mean (F1) of the accuracy on erroneous
and on fully correct samples.

Everything here is pure: no model, no database. :func:`load_pool` reads external candidate pools.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tasks.grading import parse_number

Aggregation = Literal["min", "last", "prod", "mean"]
AGGREGATIONS: tuple[Aggregation, ...] = ("min", "last", "prod", "mean")

#: Default ProcessBench threshold grid (the distinct step scores are tried as well).
THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))


@dataclass(frozen=True)
class Candidate:
    """One sampled solution of a problem, graded and (optionally) scored.

    ``step_scores`` are PRM per-step probabilities in [0, 1]; ``outcome_score`` is an ORM score of
    the whole solution; ``num_tokens`` what generating it cost.
    """

    answer: str | None
    correct: bool
    step_scores: tuple[float | None, ...] | None = None
    outcome_score: float | None = None
    num_tokens: int | None = None  # generated tokens (the compute behind the candidate)


# --------------------------------------------------------------------------------------------
# Scores and answers
# --------------------------------------------------------------------------------------------


def aggregate(step_scores: Sequence[float | None], how: Aggregation) -> float:
    """One solution score from per-step PRM scores.

    ``min`` (weakest step, Math-Shepherd), ``last`` (the final step), ``prod`` (probability that
    every step is right, "Let's verify") or ``mean``. A None entry is a step the scorer did not see
    (a candidate longer than its context is scored on its final steps): ``min``, ``prod`` and
    ``mean`` use the scored steps; ``last`` is always the final step's score. Raises ValueError for
    no scores, an unscored final step or an unknown ``how``.
    """
    scored = [s for s in step_scores if s is not None]
    if not scored:
        raise ValueError("cannot aggregate an empty list of step scores")
    if how == "min":
        return float(min(scored))
    if how == "last":
        if step_scores[-1] is None:
            raise ValueError("the final step has no score")
        return float(step_scores[-1])
    if how == "prod":
        return float(math.prod(scored))
    if how == "mean":
        return math.fsum(scored) / len(scored)
    raise ValueError(f"unknown aggregation {how!r}; expected one of {AGGREGATIONS}")


_BOXED_RE = re.compile(r"^\\boxed\s*\{(.*)\}$", re.DOTALL)


def _strip_box(text: str) -> str:
    """``text`` without a ``\\boxed{...}`` around all of it; ``\\boxed{a}+\\boxed{b}`` is kept."""
    match = _BOXED_RE.match(text)
    if match is None:
        return text
    inner = match.group(1)
    depth = 0
    for char in inner:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:  # the opening brace closes before the end: not one box around it all
                return text
    return inner if depth == 0 else text


def answer_key(answer: str | None) -> str | None:
    """Canonical voting key of a final answer, or None for no answer.

    Numbers become their exact fraction ("1,000", "1000.0" and "\\boxed{1000}" all give "1000";
    "0.5" gives "1/2"), so equal values vote together. Other answers are compared as text with
    ``$`` signs and a surrounding ``\\boxed{...}`` removed and whitespace collapsed.
    """
    if answer is None:
        return None
    text = " ".join(answer.replace("$", "").split())
    text = " ".join(_strip_box(text).split())
    value = parse_number(text)
    if value is not None:
        return str(value)
    return text or None


# --------------------------------------------------------------------------------------------
# Per-problem selection
# --------------------------------------------------------------------------------------------


def _require_candidates(cands: Sequence[Candidate]) -> None:
    if not cands:
        raise ValueError("a problem needs at least one candidate")


def _require_scores(cands: Sequence[Candidate], scores: Sequence[float]) -> None:
    _require_candidates(cands)
    if len(scores) != len(cands):
        raise ValueError(f"got {len(scores)} scores for {len(cands)} candidates")


def _answer_groups(cands: Sequence[Candidate]) -> dict[str, list[int]]:
    """Candidate indices per answer key, in order of each group's first member; no-answer
    candidates are left out."""
    groups: dict[str, list[int]] = {}
    for index, cand in enumerate(cands):
        key = answer_key(cand.answer)
        if key is not None:
            groups.setdefault(key, []).append(index)
    return groups


def _vote(cands: Sequence[Candidate], weight: Callable[[list[int]], float]) -> bool:
    """Correctness of the answer group with the largest ``weight`` (ties: the group seen first);
    False when nobody has an answer."""
    best: list[int] | None = None
    best_weight = -math.inf
    for members in _answer_groups(cands).values():
        group_weight = weight(members)
        if best is None or group_weight > best_weight:
            best, best_weight = members, group_weight
    return best is not None and cands[best[0]].correct


def mean_accuracy(cands: Sequence[Candidate]) -> float:
    """pass@1: the fraction of correct candidates (the expected accuracy of picking one at random)."""
    _require_candidates(cands)
    return sum(cand.correct for cand in cands) / len(cands)


def majority_vote(cands: Sequence[Candidate]) -> bool:
    """Is the most frequent answer correct? Ties go to the answer that appears first; candidates
    without an answer do not vote; no votes at all is a miss."""
    _require_candidates(cands)
    return _vote(cands, len)


def best_of_n(cands: Sequence[Candidate], scores: Sequence[float]) -> bool:
    """Is the highest-scoring candidate correct? Ties go to the earliest candidate."""
    _require_scores(cands, scores)
    best = max(range(len(cands)), key=lambda index: (scores[index], -index))
    return cands[best].correct


def weighted_vote(cands: Sequence[Candidate], scores: Sequence[float]) -> bool:
    """Is the answer with the largest summed score correct? (PRM-weighted majority, SC+PRM.)

    Ties go to the answer that appears first; candidates without an answer do not vote.
    """
    _require_scores(cands, scores)
    return _vote(cands, lambda members: math.fsum(scores[index] for index in members))


# --------------------------------------------------------------------------------------------
# Subsets, confidence intervals, whole-pool evaluation
# --------------------------------------------------------------------------------------------


def nested_subsets(num_candidates: int, ns: Sequence[int], key: str, seed: int = 0) -> dict[int, list[int]]:
    """Candidate indices (ascending) for each N: the first N of a permutation fixed by ``key`` and
    ``seed``, so subsets are nested and identical on every machine and run (sha256, not ``hash()``).

    Raises ValueError for an N below 1 or above ``num_candidates``.
    """
    for n in ns:
        if n < 1:
            raise ValueError(f"N must be at least 1, got {n}")
        if n > num_candidates:
            raise ValueError(f"N={n} is larger than the {num_candidates} candidates of problem {key!r}")
    order = sorted(
        range(num_candidates),
        key=lambda index: hashlib.sha256(f"{seed}\x1f{key}\x1f{index}".encode()).digest(),
    )
    return {n: sorted(order[:n]) for n in ns}


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile-bootstrap ``1 - alpha`` confidence interval of the mean of ``values`` (one value
    per problem), resampling problems with replacement. Deterministic for a seed."""
    if len(values) == 0:
        raise ValueError("cannot bootstrap an empty list of values")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_boot, data.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class MethodResult:
    """Accuracy of one selection method at one N over ``problems`` problems, with its bootstrap CI.

    ``aggregation`` is the PRM step-score aggregation (None for methods that use no PRM);
    ``tokens`` the mean generated tokens per problem behind it (None: candidates without counts).
    """

    method: str
    aggregation: str | None
    n: int
    accuracy: float
    problems: int
    ci_low: float
    ci_high: float
    tokens: float | None = None


def _step_scores(cands: Sequence[Candidate], how: Aggregation) -> list[float]:
    scores = []
    for cand in cands:
        if cand.step_scores is None:
            raise ValueError("candidate has no step scores")
        scores.append(aggregate(cand.step_scores, how))
    return scores


def _outcome_scores(cands: Sequence[Candidate]) -> list[float]:
    scores = []
    for cand in cands:
        if cand.outcome_score is None:
            raise ValueError("candidate has no outcome score")
        scores.append(cand.outcome_score)
    return scores


def method_outcome(cands: Sequence[Candidate], method: str, how: Aggregation | None = None) -> float:
    """One problem's value under a selection method: 1.0 if the picked answer is correct (``pass@1``:
    the fraction of correct candidates)."""
    if method == "pass@1":
        return mean_accuracy(cands)
    if method == "majority":
        return float(majority_vote(cands))
    if method == "orm_best_of_n":
        return float(best_of_n(cands, _outcome_scores(cands)))
    if how is None:
        raise ValueError(f"{method} needs a step aggregation")
    if method == "prm_best_of_n":
        return float(best_of_n(cands, _step_scores(cands, how)))
    if method == "prm_weighted_vote":
        return float(weighted_vote(cands, _step_scores(cands, how)))
    raise ValueError(f"unknown selection method {method!r}")


def _scored(problems: Sequence[Sequence[Candidate]], keys: Sequence[str], field: str, what: str) -> bool:
    """Whether every candidate has ``field``; False if none has. Some but not all is an error that
    names the candidates without it: a method must never vanish from a table silently."""
    missing = [f"{key}#{index}" for cands, key in zip(problems, keys) for index, cand in enumerate(cands)
               if getattr(cand, field) is None]
    total = sum(len(cands) for cands in problems)
    if missing and len(missing) < total:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"{len(missing)} of {total} candidates have no {what}: {shown}")
    return not missing


def selection_outcomes(
    problems: Sequence[Sequence[Candidate]], n: int, keys: Sequence[str], method: str,
    how: Aggregation | None = None, seed: int = 0,
) -> list[float]:
    """Per-problem values of one method at one N, on the same nested candidate subsets as
    :func:`evaluate_pool` (so two methods or two models are compared on identical candidates)."""
    if len(keys) != len(problems):
        raise ValueError(f"got {len(keys)} keys for {len(problems)} problems")
    picked = [[cands[i] for i in nested_subsets(len(cands), [n], key, seed)[n]] for cands, key in zip(problems, keys)]
    return [method_outcome(cands, method, how) for cands in picked]


def mean_tokens(picked: Sequence[Sequence[Candidate]]) -> float | None:
    """Mean over problems of the generated tokens of their picked candidates (every method at one
    N reads the same candidates, so they cost the same); None if a candidate has no count."""
    if any(c.num_tokens is None for cands in picked for c in cands):
        return None
    return math.fsum(sum(c.num_tokens for c in cands) for cands in picked) / len(picked)


def evaluate_pool(
    problems: Sequence[Sequence[Candidate]], ns: Sequence[int], keys: Sequence[str], seed: int = 0
) -> list[MethodResult]:
    """Best-of-N accuracy of every applicable method at every N (in the order of ``ns``).

    ``keys`` (one per problem, e.g. problem ids) fix each problem's candidate subsets (see
    :func:`nested_subsets`). ``pass@1`` and ``majority`` always run; ``orm_best_of_n`` if the
    candidates have outcome scores; ``prm_best_of_n`` and ``prm_weighted_vote`` (once per
    aggregation) if they have step scores. Scores on some candidates but not all raise ValueError
    naming the unscored ones. All methods share the bootstrap seed, so their intervals resample
    the same problems.
    """
    if not problems:
        raise ValueError("cannot evaluate an empty pool")
    if len(keys) != len(problems):
        raise ValueError(f"got {len(keys)} keys for {len(problems)} problems")
    methods: list[tuple[str, Aggregation | None]] = [("pass@1", None), ("majority", None)]
    if _scored(problems, keys, "outcome_score", "outcome (ORM) score"):
        methods.append(("orm_best_of_n", None))
    if _scored(problems, keys, "step_scores", "step (PRM) scores"):
        methods += [(method, how) for how in AGGREGATIONS for method in ("prm_best_of_n", "prm_weighted_vote")]
    subsets = [nested_subsets(len(cands), ns, key, seed) for cands, key in zip(problems, keys)]

    results = []
    for n in dict.fromkeys(ns):
        picked = [[cands[index] for index in subset[n]] for cands, subset in zip(problems, subsets)]
        tokens = mean_tokens(picked)
        for method, how in methods:
            values = [method_outcome(cands, method, how) for cands in picked]
            low, high = bootstrap_ci(values, seed=seed)
            accuracy = math.fsum(values) / len(values)
            results.append(MethodResult(method, how, n, accuracy, len(values), low, high, tokens))
    return results


# --------------------------------------------------------------------------------------------
# External candidate pools
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolProblem:
    """One problem of an external candidate pool (line = its 1-based line in the file).

    ``scores`` holds per response a tuple of step scores (a single whole-response score is a
    1-tuple); scores are only checked to be finite, not to lie in [0, 1].
    """

    line: int
    question: str
    gold: str
    responses: tuple[str, ...]
    scores: tuple[tuple[float, ...], ...] | None
    correct: tuple[bool, ...] | None


@dataclass(frozen=True)
class PoolLineError:
    """A pool line that was skipped, and why."""

    line: int
    reason: str
    path: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {_json_type(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{where} is not finite: {value!r}")
    return number


def _list_field(record: dict[str, Any], name: str, length: int) -> list[Any] | None:
    """An optional per-response list field: None if absent (or null); checked to match ``length``."""
    value = record.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError(f"'{name}' must be an array, got {_json_type(value)}")
    if len(value) != length:
        raise ValueError(f"'{name}' has {len(value)} entries for {length} responses")
    return value


def _score_entry(value: Any, where: str) -> tuple[float, ...]:
    if isinstance(value, list):
        if not value:
            raise ValueError(f"{where} is an empty list of step scores")
        return tuple(_finite(item, f"{where}[{index}]") for index, item in enumerate(value))
    return (_finite(value, where),)


def _pool_problem(record: Any, line: int) -> PoolProblem:
    """Validate one parsed pool line; raises ValueError with the reason."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {_json_type(record)}")
    for name in ("question", "answer", "responses"):
        if name not in record:
            raise ValueError(f"missing field '{name}'")

    question = record["question"]
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"'question' must be a non-empty string, got {_json_type(question)}")

    gold = record["answer"]
    if isinstance(gold, str):
        if not gold.strip():
            raise ValueError("'answer' is blank")
        gold = gold.strip()
    elif isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold) if isinstance(gold, int) else str(_finite(gold, "'answer'"))
    else:
        raise ValueError(f"'answer' must be a string or a number, got {_json_type(gold)}")

    responses = record["responses"]
    if not isinstance(responses, list) or not responses:
        raise ValueError(f"'responses' must be a non-empty array, got {_json_type(responses)}")
    for index, response in enumerate(responses):
        if not isinstance(response, str):
            raise ValueError(f"responses[{index}] must be a string, got {_json_type(response)}")

    raw_scores = _list_field(record, "scores", len(responses))
    scores = None
    if raw_scores is not None:
        scores = tuple(_score_entry(entry, f"scores[{index}]") for index, entry in enumerate(raw_scores))

    raw_correct = _list_field(record, "correct", len(responses))
    if raw_correct is not None:
        for index, flag in enumerate(raw_correct):
            if not isinstance(flag, bool):
                raise ValueError(f"correct[{index}] must be a boolean, got {_json_type(flag)}")

    return PoolProblem(
        line=line,
        question=question,
        gold=gold,
        responses=tuple(responses),
        scores=scores,
        correct=None if raw_correct is None else tuple(raw_correct),
    )


def load_pool(path: str | Path) -> tuple[list[PoolProblem], list[PoolLineError]]:
    """Read an external candidate pool: JSONL, one problem per line.

    Each line is an object with ``question`` (string), ``answer`` (gold; string or number),
    ``responses`` (non-empty array of strings) and optionally ``scores`` (one entry per response:
    a number for the whole response or an array of per-step numbers) and ``correct`` (one boolean
    per response); other fields are ignored. A bad line never stops the load: it becomes a
    :class:`PoolLineError`. Blank lines are skipped. Raises FileNotFoundError for a missing file.
    """
    problems: list[PoolProblem] = []
    errors: list[PoolLineError] = []
    try:
        handle = open(path, "rb")  # bytes, so a line of invalid UTF-8 is one bad line
    except FileNotFoundError:
        raise FileNotFoundError(f"candidate pool file not found: {path}") from None
    with handle:
        for line, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8-sig"))
            except UnicodeDecodeError:
                errors.append(PoolLineError(line, "not valid UTF-8", str(path)))
                continue
            except (ValueError, RecursionError) as error:
                errors.append(PoolLineError(line, f"invalid JSON: {error}", str(path)))
                continue
            try:
                problems.append(_pool_problem(record, line))
            except ValueError as error:
                errors.append(PoolLineError(line, str(error), str(path)))
    return problems, errors


# --------------------------------------------------------------------------------------------
# ProcessBench
# --------------------------------------------------------------------------------------------


def earliest_error(step_scores: Sequence[float], threshold: float) -> int:
    """0-based index of the first step scored below ``threshold``; -1 if none is (no error found)."""
    for index, score in enumerate(step_scores):
        if score < threshold:
            return index
    return -1


def _label_counts(labels: Sequence[int]) -> tuple[int, int]:
    """(erroneous, correct) sample counts; both must be non-zero for an F1."""
    for label in labels:
        if label < -1:
            raise ValueError(f"labels are step indices or -1, got {label}")
    correct = sum(1 for label in labels if label == -1)
    erroneous = len(labels) - correct
    if not erroneous or not correct:
        raise ValueError(
            f"ProcessBench F1 needs erroneous and correct samples, got {erroneous} and {correct}"
        )
    return erroneous, correct


def _f1(error_accuracy: float, correct_accuracy: float) -> float:
    if error_accuracy == 0 or correct_accuracy == 0:
        return 0.0
    return 2 * error_accuracy * correct_accuracy / (error_accuracy + correct_accuracy)


def processbench_f1(predictions: Sequence[int], labels: Sequence[int]) -> dict[str, float]:
    """ProcessBench metrics of predicted earliest-error indices against labels (-1 = no error).

    ``error_accuracy``: exact-index accuracy on erroneous samples; ``correct_accuracy``: accuracy on
    correct samples (predicted -1); ``f1``: their harmonic mean; plus both sample counts.
    """
    if len(predictions) != len(labels):
        raise ValueError(f"got {len(predictions)} predictions for {len(labels)} labels")
    erroneous, correct = _label_counts(labels)
    error_hits = sum(1 for p, label in zip(predictions, labels) if label != -1 and p == label)
    correct_hits = sum(1 for p, label in zip(predictions, labels) if label == -1 and p == -1)
    error_accuracy = error_hits / erroneous
    correct_accuracy = correct_hits / correct
    return {
        "error_accuracy": error_accuracy,
        "correct_accuracy": correct_accuracy,
        "f1": _f1(error_accuracy, correct_accuracy),
        "error_samples": erroneous,
        "correct_samples": correct,
    }


def choose_threshold(
    score_lists: Sequence[Sequence[float]], labels: Sequence[int], candidates: Sequence[float] | None = None
) -> tuple[float, dict[str, float]]:
    """The threshold with the best ProcessBench F1 (ties: the smallest) and its metrics.

    Tries ``candidates``, by default :data:`THRESHOLD_GRID` plus every distinct step score. Each
    sample is right for one interval of thresholds (a correct one for t <= min score; one whose
    first error is step L for s[L] < t <= min(s[:L])), so all thresholds are scored in one pass.
    """
    if len(score_lists) != len(labels):
        raise ValueError(f"got {len(score_lists)} score lists for {len(labels)} labels")
    erroneous, correct = _label_counts(labels)
    if candidates is None:
        candidates = [*THRESHOLD_GRID, *(score for scores in score_lists for score in scores)]
    grid = np.array(sorted(set(candidates)), dtype=float)
    if grid.size == 0 or not np.all(np.isfinite(grid)):
        raise ValueError("thresholds and step scores must be finite, and there must be at least one threshold")

    # Difference arrays over grid indices: +1 where a sample's interval starts, -1 past its end.
    error_hits = np.zeros(grid.size + 1, dtype=np.int64)
    correct_hits = np.zeros(grid.size + 1, dtype=np.int64)
    for scores, label in zip(score_lists, labels):
        if label == -1:
            low, high, hits = -math.inf, min(scores, default=math.inf), correct_hits
        elif label < len(scores):
            low, high, hits = scores[label], min(scores[:label], default=math.inf), error_hits
        else:  # the labelled step does not exist: never predicted
            continue
        start = int(np.searchsorted(grid, low, side="right"))  # first t > low
        stop = int(np.searchsorted(grid, high, side="right"))  # first t > high
        if start < stop:
            hits[start] += 1
            hits[stop] -= 1
    error_accuracy = np.cumsum(error_hits)[:-1] / erroneous
    correct_accuracy = np.cumsum(correct_hits)[:-1] / correct
    denominator = error_accuracy + correct_accuracy
    f1 = np.divide(2 * error_accuracy * correct_accuracy, denominator, out=np.zeros(grid.size), where=denominator > 0)
    threshold = float(grid[int(np.argmax(f1))])
    predictions = [earliest_error(scores, threshold) for scores in score_lists]
    return threshold, processbench_f1(predictions, labels)
