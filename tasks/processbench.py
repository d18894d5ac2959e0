"""ProcessBench evaluation of a registered process reward model (PRM).

Protocol (Zheng et al., 2024). Each ProcessBench sample is a problem, a solution split into
steps, and a label: the 0-based index of the earliest wrong step, or -1 when every step is
right. The PRM scores every step (probability that the step is good); the predicted earliest
error is the first step scored below a threshold (-1 if none is, see
:func:`tasks.evaluation.earliest_error`). The metric is the harmonic mean (F1) of the exact-index
accuracy on erroneous samples and the accuracy on fully correct samples
(:func:`tasks.evaluation.processbench_f1`).

Threshold. Unless one is given, it is chosen on the GSM8K split (same ``limit``) to maximise F1
(:func:`tasks.evaluation.choose_threshold`) and then applied to the evaluated split, so the MATH
score is not tuned on MATH itself (``threshold_source`` records ``'gsm8k'`` or ``'given'``). A
GSM8K evaluation without a given threshold is tuned on itself: read it as an upper bound.

Implicit PRM. An implicit PRM (``--model implicit-...``) is read out as ``sigmoid``, sigmoid(q_t)
in (0, 1), its estimate that the solution so far leads to a correct answer; thresholded as
PRIME-RL/ImplicitPRM does for ProcessBench.

Long samples. The PRM scores with its whole context window; a sample that still does not fit is
scored on the question and its final steps (:class:`tasks.verifiers.SolutionScores`), so its
earliest steps have no score. An unscored step is never below the threshold, so it can never be
flagged: an error there counts as missed, and a correct sample is judged on its scored steps.
Threshold candidates are the real scores only.

Each run stores one ``processbench_results`` row under its run id.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.datasets import data_dir
from tasks.evaluation import THRESHOLD_GRID, choose_threshold, earliest_error, processbench_f1
from tasks.progress import progress
from tasks.registry import get_model
from tasks.store import Store
from tasks.verifiers import ScoringSettings, SolutionScores, Verifier, load_verifier
from tasks.verifiers.implicit import with_readout

SPLITS: tuple[str, ...] = ("gsm8k", "math")
#: The split thresholds are chosen on when none is given.
THRESHOLD_SPLIT = "gsm8k"


@dataclass(frozen=True)
class ProcessBenchSample:
    """One ProcessBench solution; ``label`` is the earliest wrong step's index, -1 if none."""

    id: str
    question: str
    steps: tuple[str, ...]
    label: int


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown ProcessBench split {split!r}; expected one of {', '.join(SPLITS)}")


def _sample(row: dict[str, Any], path: Path) -> ProcessBenchSample:
    steps = tuple(row["steps"])
    label = row["label"]
    if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < len(steps):
        raise ValueError(f"{path}: sample {row.get('id')!r} has label {label!r}, "
                         f"not -1 or a step index below {len(steps)}")
    return ProcessBenchSample(str(row["id"]), row["problem"], steps, label)


def _subset(samples: list[ProcessBenchSample], limit: int) -> list[ProcessBenchSample]:
    """``limit`` samples, both classes present: taken alternately (erroneous first) from the
    erroneous and the correct samples in file order, the other class filling in once one runs out;
    returned in file order. Deterministic, and a smaller limit is a subset of a larger one."""
    erroneous = [i for i, s in enumerate(samples) if s.label != -1]
    correct = [i for i, s in enumerate(samples) if s.label == -1]
    picked: list[int] = []
    for k in range(max(len(erroneous), len(correct))):
        picked.extend(group[k] for group in (erroneous, correct) if k < len(group))
    return [samples[i] for i in sorted(picked[:limit])]


def load_processbench(split: str, limit: int | None = None) -> list[ProcessBenchSample]:
    """The ProcessBench ``split`` ('gsm8k' or 'math') from ``data/processbench/<split>.json``.

    Without a limit: every sample, in file order. With one: ``limit`` samples with erroneous and
    correct ones alternating (see :func:`_subset`), so both classes are present and the F1 is
    defined. Raises ValueError for an unknown split, a limit below 2, or a label that is neither
    -1 nor a step index.
    """
    _check_split(split)
    if limit is not None and limit < 2:
        raise ValueError(f"limit must be at least 2 (one erroneous and one correct sample), got {limit}")
    path = data_dir() / "processbench" / f"{split}.json"
    samples = [_sample(row, path) for row in json.loads(path.read_text())]
    return samples if limit is None else _subset(samples, limit)


def score_samples(model: Verifier, samples: Sequence[ProcessBenchSample], split: str = "") -> list[SolutionScores]:
    """Per-step PRM scores (probability of a good step) of each sample, one entry per step; the
    leading entries are None when the sample did not fit in the model's context."""
    items = [(s.question, list(s.steps)) for s in samples]
    with progress(f"processbench {split}".rstrip(), len(items)) as advance:
        return model.score_many(items, advance)


def _comparable(scores: SolutionScores) -> list[float]:
    """Step scores with an unscored step as +inf: never below a (finite) threshold, never flagged."""
    return [math.inf if score is None else score for score in scores.step_scores]


def predictions(score_lists: Sequence[SolutionScores], threshold: float) -> list[int]:
    """Predicted earliest wrong step of each sample: the first step scored below ``threshold``
    (-1: none is). An unscored step (None) is never below it."""
    return [earliest_error(_comparable(scores), threshold) for scores in score_lists]


def pick_threshold(score_lists: Sequence[SolutionScores], labels: Sequence[int]) -> float:
    """The F1-maximising threshold (:func:`tasks.evaluation.choose_threshold`) over
    :data:`~tasks.evaluation.THRESHOLD_GRID` and the real step scores (None entries are no
    candidates and are never flagged)."""
    candidates = [*THRESHOLD_GRID, *(score for scores in score_lists for score in scores.scored)]
    threshold, _ = choose_threshold([_comparable(scores) for scores in score_lists], labels, candidates)
    return threshold


def run_processbench(store: Store, split: str, model_id: str | None = None, limit: int | None = None,
                     threshold: float | None = None, run_id: str = "manual",
                     scoring: ScoringSettings | None = None) -> dict[str, Any]:
    """Evaluate a PRM (``model_id``, or the promoted/newest PRM; a named implicit PRM is read out as
    ``sigmoid``) on a ProcessBench split.

    Without a ``threshold`` it is chosen on the GSM8K split (with the same ``limit``). Stores one
    ``processbench_results`` row and returns its numbers plus both sample counts. The store is
    released while the model loads and scores.
    """
    _check_split(split)
    if threshold is not None and not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    model = get_model(store, model_id, kind="prm")  # a PRM or an implicit PRM; an ORM is an error: no per-step scores
    samples = load_processbench(split, limit)
    tuning = load_processbench(THRESHOLD_SPLIT, limit) if threshold is None and split != THRESHOLD_SPLIT else None
    tuning_scores: list[SolutionScores] = []
    with store.released():
        reward_model = with_readout(load_verifier(model["path"], scoring), "sigmoid")
        if tuning is not None:
            tuning_scores = score_samples(reward_model, tuning, THRESHOLD_SPLIT)
        scores = score_samples(reward_model, samples, split)
    labels = [s.label for s in samples]
    if threshold is None:
        if tuning is None:  # evaluating the tuning split itself
            tuning, tuning_scores = samples, scores
        threshold = pick_threshold(tuning_scores, [s.label for s in tuning])
        source = THRESHOLD_SPLIT
    else:
        source = "given"
    metrics = processbench_f1(predictions(scores, threshold), labels)
    result = {"model_id": model["model_id"], "split": split, "samples": len(samples), "threshold": float(threshold),
              "threshold_source": source, "error_accuracy": metrics["error_accuracy"],
              "correct_accuracy": metrics["correct_accuracy"], "f1": metrics["f1"],
              "error_samples": metrics["error_samples"], "correct_samples": metrics["correct_samples"]}
    columns = ("model_id", "split", "samples", "threshold", "threshold_source", "error_accuracy",
               "correct_accuracy", "f1")
    store.insert_rows("processbench_results", [{"run_id": run_id, **{c: result[c] for c in columns}}],
                      skip_existing=False)  # no key: every run is a row
    return result


@task(name="processbench", cache_policy=NO_CACHE, task_run_name="processbench-{split}")
def processbench_task(db: Path | str, split: str, model_id: str | None = None, limit: int | None = None,
                      threshold: float | None = None, run_id: str = "manual",
                      scoring: ScoringSettings | None = None) -> dict[str, Any]:
    # No retries: a failure stores nothing, so the run can simply be started again.
    with Store(db) as store:
        return run_processbench(store, split, model_id, limit, threshold, run_id, scoring)
