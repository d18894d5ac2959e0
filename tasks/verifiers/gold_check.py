"""Verifier step scores against arith gold step labels (``prmf gold-steps``): on held-out problems,
does a verifier's score tell a gold-correct step from a wrong one?

The candidates of an arith evaluation pool (the test pool by default; ``prmf eval`` scored them)
have exact gold step labels (:func:`tasks.arith.gold_step_labels`: a step is correct while every
equation so far is right and uses known numbers). Each step-scoring model's stored step scores are
read as evaluated: a step-tag PRM's as they are, an implicit PRM's once per read-out (``step`` r_t,
``cumulative`` q_t; :func:`tasks.verifiers.implicit.apply_readout`).

All scorers are compared on the same steps (those every one of them scored), so the AUCs are
paired: each comes with a 95% interval from a bootstrap over problems, and every scorer's
difference from the first one on the same resamples. ``non-final`` steps measure the process (a
final step's gold label is mostly the answer's correctness); ``all`` adds the final steps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.arith import gold_step_labels, problem_from_meta
from tasks.diagnostics import Interval, clustered_auc_intervals
from tasks.store import Store, StoreError, internal_sql
from tasks.verifiers.implicit import apply_readout

IMPLICIT_READOUTS = ("step", "cumulative")


@dataclass(frozen=True)
class ScorerGoldCheck:
    scorer: str  # the model id, with ":<read-out>" for an implicit PRM
    kind: str
    non_final: Interval  # AUC over non-final steps
    all_steps: Interval
    non_final_minus_first: Interval | None  # paired AUC difference from the first scorer (None: it is the first)


@dataclass(frozen=True)
class GoldStepCheck:
    split: str
    problems: int
    candidates: int
    non_final_steps: int
    non_final_gold_correct: int
    all_steps: int
    scorers: tuple[ScorerGoldCheck, ...]


def gold_step_check(store: Store, model_ids: Sequence[str] = (), split: str = "test",
                    readouts: Sequence[str] = IMPLICIT_READOUTS, n_boot: int = 1000, seed: int = 0) -> GoldStepCheck:
    rows = store.query(internal_sql("gold_step_scores"), {"split": split, "model_ids": list(model_ids)}).as_dicts()
    found = {r["model_id"] for r in rows}
    missing = [m for m in model_ids if m not in found]
    if missing or not rows:
        named = ", ".join(missing) if missing else "no step-scoring model (PRM or implicit PRM)"
        raise StoreError(f"{store.path}: {named} has no scores on an arith {split} pool: evaluate it first "
                         f"(prmf eval --dataset arith --prm MODEL_ID)")
    order = list(model_ids) or list(dict.fromkeys(r["model_id"] for r in rows))
    # scorer -> (pool, problem, candidate, step index) -> score
    scores: dict[str, dict[tuple[str, str, int, int], float]] = {}
    kinds: dict[str, str] = {}
    gold: dict[tuple[str, str, int, int], tuple[bool, bool]] = {}  # -> (gold label, is the final step)
    labelled: set[tuple[str, str, int]] = set()
    for r in rows:
        candidate = (r["pool_id"], r["problem_id"], r["candidate_index"])
        steps = json.loads(r["steps"]) if isinstance(r["steps"], str) else list(r["steps"])
        if candidate not in labelled:
            meta = json.loads(r["meta"]) if isinstance(r["meta"], str) else r["meta"]
            problem = problem_from_meta(r["question"], r["gold_answer"], meta)
            for i, label in enumerate(gold_step_labels(problem, steps, bool(r["correct"]))):
                gold[(*candidate, i)] = (label, i == len(steps) - 1)
            labelled.add(candidate)
        views = ([(f"{r['model_id']}:{how}", apply_readout(r["step_scores"], how)) for how in readouts]
                 if r["kind"] == "implicit" else [(r["model_id"], tuple(r["step_scores"]))])
        for name, values in views:
            kinds[name] = r["kind"]
            column = scores.setdefault(name, {})
            for i, value in enumerate(values[: len(steps)]):
                if value is not None:
                    column[(*candidate, i)] = value
    names = sorted(scores, key=lambda n: (order.index(n.split(":")[0]), n))
    shared = sorted(set.intersection(*(set(scores[n]) for n in names)) & set(gold))
    if not shared:
        raise StoreError(f"{store.path}: the scorers {', '.join(names)} have no scored step in common")
    results: dict[str, dict[str, Interval]] = {}
    counts = {}
    for subset, keys in (("non_final", [k for k in shared if not gold[k][1]]), ("all", shared)):
        counts[subset] = (len(keys), sum(gold[k][0] for k in keys))
        differences = [(n, names[0]) for n in names[1:]]
        results[subset] = clustered_auc_intervals({n: [scores[n][k] for k in keys] for n in names},
                                                  [gold[k][0] for k in keys], [k[1] for k in keys],
                                                  differences=differences if subset == "non_final" else (),
                                                  n_boot=n_boot, seed=seed)
    checks = tuple(ScorerGoldCheck(n, kinds[n], results["non_final"][n], results["all"][n],
                                   results["non_final"].get(f"{n}-{names[0]}")) for n in names)
    return GoldStepCheck(split, len({k[1] for k in shared}), len({k[:3] for k in shared}), counts["non_final"][0],
                         counts["non_final"][1], counts["all"][0], checks)


def gold_step_table(check: GoldStepCheck) -> tuple[list[str], list[list[str]]]:
    def cell(i: Interval | None, signed: bool = False) -> str:
        if i is None or i.value is None:
            return "" if i is None else "n/a"
        fmt = "+.3f" if signed else ".3f"
        return f"{i.value:{fmt}} [{i.ci_low:{fmt}}, {i.ci_high:{fmt}}]" if i.ci_low is not None else f"{i.value:{fmt}}"

    first = check.scorers[0].scorer
    columns = ["scorer", "kind", "AUC non-final steps", "AUC all steps", f"non-final AUC - {first}"]
    return columns, [[s.scorer, s.kind, cell(s.non_final), cell(s.all_steps), cell(s.non_final_minus_first, True)]
                     for s in check.scorers]
