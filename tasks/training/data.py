"""Training data: examples from the store's step labels, evaluation problems kept out.

Targets. ``he``: 1 if any rollout from the prefix reached the right answer; ``se``: the fraction
that did. With ``after_first_error="drop"`` the steps after the first HE = 0 step carry no loss
(their label is implied). A step whose HE a labelling strategy inferred (no rollouts from it)
trains on that HE with ``inferred_labels="include"`` and carries no loss with ``"exclude"``; it
has no SE, so no loss under ``target="se"``. An ORM has one target, the solution's correctness.
``gold`` (the oracle PRM): each step's exact gold label (arith: :func:`tasks.arith.gold_step_labels`,
stored with the steps) on every graded solution whose steps all have one, labelled by rollouts or
not; ``after_first_error`` applies to the first gold-wrong step. ``pav`` (process advantages,
Setlur et al. 2024): the effective reward Q_pi + alpha * A_mu of ``config.prover``
(``step_advantages``), squashed affinely to [0, 1] (:func:`squash_reward`); a
step whose prefix or predecessor has no value carries no loss, ``after_first_error`` does not
apply (a wrong step's low reward is its label), and an inferred step has no value. Of several base
evaluations the one giving the most steps a reward is used (ties: smallest completer, sampling,
budget); a solution with no rewarded step under it is left out.

Imported labels (``prmf import``, ``config.labels`` imported or both) come in the same columns
(``sql/internal/import_training_steps.sql``): he and se as the source gives them (se falls back to
he), the solution's correctness as its source says; a step its source left unlabelled carries no loss.

Data hygiene. Train/validation is split by problem, never by step. Evaluation problems are
never trained on: any problem of a test or validation split or of MATH500, any problem whose
question text matches a GSM8K-test, MATH500, ProcessBench, arith-test or arith-validation question
(:func:`eval_questions`), and any question of an evaluation pool in the store
(:func:`evaluation_pool_questions`: the validation pools that decide promotion included),
whatever split or dataset it was ingested under.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tasks.config import TrainConfig
from tasks.labelling.advantages import squash_reward
from tasks.store import Store, internal_sql

ARITH_EVAL_PROBLEMS = 1000  # the arith test and validation problems any evaluation may use


class TrainingError(RuntimeError):
    """Training cannot start or finish (no labels, too few problems, bad base model)."""


@dataclass(frozen=True)
class Example:
    problem_id: str
    question: str
    steps: tuple[str, ...]
    targets: tuple[float | None, ...]  # one per step (ORM: one); None = no loss on this step
    solution_id: str | None = None  # the stored solution it came from (what its data cost is counted over)


def normalize_question(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


@lru_cache(maxsize=1)
def eval_questions() -> frozenset[str]:
    """Normalized texts of every question an evaluation may use."""
    from tasks import datasets

    texts: set[str] = set()
    for result in (datasets.load_gsm8k("test"), datasets.load_math500(),
                   datasets.load_arith(ARITH_EVAL_PROBLEMS, split="test"),
                   datasets.load_arith(ARITH_EVAL_PROBLEMS, split="validation")):
        texts.update(normalize_question(p.question) for p in result.problems)
    for split in ("gsm8k", "math"):
        path = datasets.data_dir() / "processbench" / f"{split}.json"
        texts.update(normalize_question(row["problem"]) for row in json.loads(path.read_text()))
    return frozenset(texts)


def evaluation_pool_questions(store: Store) -> frozenset[str]:
    """Normalized texts of every question in the store's evaluation pools (test and validation):
    a user's validation set drawn from a train split is protected as well."""
    return frozenset(normalize_question(q) for (q,) in store.query(internal_sql("evaluation_pool_questions")).rows)


def training_slice(store: Store, config: TrainConfig) -> frozenset[str] | None:
    """The problems ``config.problem_limit`` allows (None: every problem)."""
    if config.problem_limit is None:
        return None
    return frozenset(p for (p,) in store.query(internal_sql("first_problems"), {"n": config.problem_limit}).rows)


def wanted_row(row: dict[str, Any], config: TrainConfig, allowed: frozenset[str] | None) -> bool:
    """A training row of the configured datasets, slice and labels (factory, imported or both)."""
    imported = bool(row.get("imported"))
    if (imported and config.labels == "factory") or (not imported and config.labels == "imported"):
        return False
    return (not config.datasets or row["dataset"] in config.datasets) and (allowed is None or row["problem_id"] in allowed)


def training_rows(store: Store, config: TrainConfig) -> list[dict[str, Any]]:
    """The step rows a PRM or ORM trains on: the factory's labels (``labelled_steps``), the imported
    ones (``prmf import``), or both (``config.labels``); the oracle's gold steps for target gold."""
    if config.kind == "prm" and config.target == "gold":
        return store.query(internal_sql("gold_training_steps")).as_dicts()
    rows: list[dict[str, Any]] = []
    if config.labels in ("factory", "both"):
        rows += store.query(internal_sql("training_steps")).as_dicts()
    if config.labels in ("imported", "both"):
        rows += store.query(internal_sql("import_training_steps")).as_dicts()
    return rows


def is_eval_problem(dataset: str, split: str, question: str, pooled: frozenset[str] = frozenset()) -> bool:
    text = normalize_question(question)
    return split in ("test", "validation") or dataset == "math500" or text in eval_questions() or text in pooled


@dataclass(frozen=True)
class TrainingData:
    examples: list[Example]
    excluded: int  # problems excluded as evaluation problems
    meta: dict[str, Any]  # what the targets were computed from (pav: prover, alpha, base evaluation); in prm.json
    snapshot: dict[str, Any]  # counts for the model's data snapshot


def load_examples(store: Store, config: TrainConfig) -> tuple[list[Example], int]:
    """Training examples from fully labelled solutions, minus evaluation problems.

    Returns the examples and the number of problems excluded as evaluation problems.
    """
    data = load_training_data(store, config)
    return data.examples, data.excluded


def load_training_data(store: Store, config: TrainConfig) -> TrainingData:
    """:func:`load_examples` with what the targets were computed from."""
    pooled = evaluation_pool_questions(store)
    rows = training_rows(store, config)
    allowed = training_slice(store, config)
    by_solution: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if not wanted_row(row, config, allowed):
            continue
        by_solution.setdefault(row["solution_id"], []).append(row)
    kept, excluded = [], set()
    for steps in by_solution.values():
        first = steps[0]
        if is_eval_problem(first["dataset"], first["split"], first["question"], pooled):
            excluded.add(first["problem_id"])
            continue
        kept.append(steps)
    if config.kind == "prm" and config.target == "pav":
        return _pav_data(store, config, kept, len(excluded))
    examples = []
    for steps in kept:
        first = steps[0]
        if config.kind == "orm":
            targets: tuple[float | None, ...] = (float(first["solution_correct"]),)
        else:
            targets = step_targets(steps, config)
        examples.append(Example(first["problem_id"], first["question"], tuple(s["text"] for s in steps), targets,
                                first["solution_id"]))
    return TrainingData(examples, len(excluded), {}, {})


def _pav_data(store: Store, config: TrainConfig, kept: list[list[dict[str, Any]]], excluded: int) -> TrainingData:
    k = int(config.prover[2:]) if re.fullmatch(r"bo\d+", config.prover) else 1  # k only shapes bo<K>
    rows = store.query(internal_sql("training_advantages"),
                       {"alpha": config.alpha, "k": k, "prover": config.prover}).rows
    if not rows:
        present = [p for (p,) in store.query(internal_sql("training_provers")).rows]
        raise TrainingError(f"{store.path}: prover {config.prover!r} is not in the store; provers present: "
                            + (", ".join(present) if present else "none (no math_shepherd rollouts stored)"))
    wanted = {steps[0]["solution_id"] for steps in kept}
    by_base: dict[tuple[str, str, int], dict[tuple[str, int], float | None]] = {}
    for solution_id, step_index, completer, params, budget, reward in rows:
        if solution_id in wanted:
            by_base.setdefault((completer, params, budget), {})[(solution_id, step_index)] = reward
    rewarded = {base: sum(r is not None for r in rewards.values()) for base, rewards in by_base.items()}
    if not rewarded or max(rewarded.values()) == 0:
        raise TrainingError(f"{store.path}: no step of the training solutions has a reward under prover "
                            f"{config.prover!r} (it needs full-budget math_shepherd rollouts of a step's prefix and "
                            "of its predecessor; the first step needs the question's, +root)")
    base = min(rewarded, key=lambda b: (-rewarded[b], b))
    rewards = by_base[base]
    examples, unrewarded = [], 0
    for steps in kept:
        first = steps[0]
        values = [rewards.get((first["solution_id"], s["step_index"])) for s in steps]
        if all(r is None for r in values):
            unrewarded += 1  # no loss on any of its steps
            continue
        targets = tuple(None if r is None else squash_reward(r, config.alpha) for r in values)
        examples.append(Example(first["problem_id"], first["question"], tuple(s["text"] for s in steps), targets,
                                first["solution_id"]))
    pav_base = {"completer": base[0], "params": base[1], "budget": base[2]}
    meta = {"prover": config.prover, "alpha": config.alpha, "pav_base": pav_base, "squash": "affine"}
    snapshot = {"pav_base": pav_base, "pav_rewarded_steps": rewarded[base], "pav_unrewarded_solutions": unrewarded}
    return TrainingData(examples, excluded, meta, snapshot)


def step_targets(steps: list[dict[str, Any]], config: TrainConfig) -> tuple[float | None, ...]:
    targets: list[float | None] = []
    seen_error = False
    for s in steps:
        if seen_error and config.after_first_error == "drop":
            targets.append(None)
            continue
        if config.target != "gold" and s["he"] is None:
            targets.append(None)  # an imported step its source left unlabelled (ProcessBench after the error)
            continue
        inferred = bool(s.get("inferred"))  # (gold rows have no such column: never inferred)
        if inferred and config.inferred_labels == "exclude":
            targets.append(None)  # as if unlabelled: nor does it count as the first error
            continue
        if config.target == "gold":
            targets.append(float(s["gold"]))
            seen_error = seen_error or not s["gold"]
            continue
        if config.target == "he":
            targets.append(float(s["he"]))
        else:  # an inferred step has no SE
            targets.append(None if s["se"] is None else float(s["se"]))
        seen_error = seen_error or not s["he"]
    return tuple(targets)


def split_by_problem(examples: list[Example], val_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Deterministic problem-level split: all solutions of a problem land on the same side."""
    problems = sorted({e.problem_id for e in examples})
    if len(problems) < 2:
        raise TrainingError(f"need labelled solutions of at least 2 problems to split train/validation, found {len(problems)}")

    def rank(problem_id: str) -> str:
        return hashlib.sha256(f"{seed}\x1f{problem_id}".encode()).hexdigest()

    ordered = sorted(problems, key=rank)
    val_count = min(len(problems) - 1, max(1, round(val_fraction * len(problems))))
    val = set(ordered[:val_count])
    return [e for e in examples if e.problem_id not in val], [e for e in examples if e.problem_id in val]
