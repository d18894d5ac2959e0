"""The study's report: every number read back from the store (``eval_results``, ``eval_diagnostics``,
``prm_models``, ``processbench_results``, the gold step check), never carried over from the runs.

Selection. Each verifier's best-of-N and weighted vote use the aggregation that did best on the
validation pools at N = ``selection_n`` (mean accuracy over them; ties: min, last, prod, mean);
the test pool only reports. The ORM has one score per solution and no aggregation.

The bar (issue 16): a verifier the factory trained (the oracle, trained on gold labels, does not
count) beats majority vote at N = ``selection_n`` on the test pool by at least 10 points with
non-overlapping 95% intervals. The report says whether it was met and, if not, how far the best
verifier and the oracle ceiling are from it and how accuracy moved with the data.

Paired differences. Two accuracies with overlapping intervals may still differ reliably: both
methods pick from the same candidates of the same problems. Per verifier, the report recomputes
each test problem's outcome at N = ``selection_n`` (and majority vote's, on the same candidate
subsets) from the stored candidates and scores, checks their means against ``eval_results``, and
gives the mean difference with a two-sided 95% paired-bootstrap interval over problems.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks.config import StudyConfig
from tasks.evaluation import AGGREGATIONS
from tasks.store import Store, internal_sql

BAR_MARGIN = 0.10
STEP_METHODS = ("prm_best_of_n", "prm_weighted_vote")


@dataclass(frozen=True)
class TrainedVerifier:
    size: int  # problems in its slice
    verifier: str  # the study's name for it (orm, prm-he, ...)
    model_id: str
    eval_run_id: str
    processbench_run_id: str | None = None
    pool_run_ids: tuple[str, ...] = ()  # evaluations on the external pools (no validation pool of their own)
    beam_run_id: str | None = None  # the beam search it guided on the test pools (one verifier per study)

    @property
    def run_ids(self) -> tuple[str, ...]:
        return (self.eval_run_id, *self.pool_run_ids)


@dataclass(frozen=True)
class Accuracy:
    value: float
    ci_low: float
    ci_high: float
    problems: int

    def cell(self) -> str:
        return f"{self.value:.3f} [{self.ci_low:.2f}, {self.ci_high:.2f}]"


@dataclass(frozen=True)
class Row:
    """One selection method of one verifier on one test pool: accuracy per N."""

    name: str  # verifier name, or pass@1 / majority
    size: int | None  # slice (None: no verifier)
    method: str
    aggregation: str | None  # chosen on validation
    model_id: str | None
    by_n: dict[int, Accuracy]


@dataclass
class DatasetReport:
    dataset: str
    split: str  # test, or external (a --pool file)
    problems: int
    ns: list[int]
    rows: list[Row]  # the largest slice's verifiers, pass@1 and majority
    scaling: list[Row]  # every slice's verifiers (best-of-N with the chosen aggregation)
    diagnostics: list[dict[str, Any]]
    bar: dict[str, Any]
    beam: list[dict[str, Any]] = field(default_factory=list)  # beam search vs best-of-N at no more tokens
    paired: list[dict[str, Any]] = field(default_factory=list)  # each verifier minus majority, paired over problems


@dataclass
class StudyReport:
    study_id: str
    selection_n: int
    sizes: list[int]
    datasets: list[DatasetReport]
    costs: list[dict[str, Any]]
    gold: dict[str, Any] | None
    processbench: list[dict[str, Any]]
    times: list[dict[str, Any]] = field(default_factory=list)  # stage, result_id, seconds (study_stage_times.sql)
    plots: dict[str, str] = field(default_factory=dict)  # name -> file


def validation_means(validation: Sequence[dict[str, Any]], method: str, n: int) -> dict[str, float]:
    """Per aggregation, the mean validation accuracy of ``method`` at the largest N <= ``n``."""
    rows = [r for r in validation if r["method"] == method and r["n"] <= n]
    if not rows:
        return {}
    top = max(r["n"] for r in rows)
    means = {}
    for how in AGGREGATIONS:
        values = [r["accuracy"] for r in rows if r["n"] == top and r["aggregation"] == how]
        if values:
            means[how] = sum(values) / len(values)
    return means


def choose_aggregation(validation: Sequence[dict[str, Any]], method: str, n: int) -> str | None:
    """The aggregation with the best mean validation accuracy of ``method`` at the largest N <= ``n``."""
    means = validation_means(validation, method, n)
    return max(means, key=lambda how: (means[how], -AGGREGATIONS.index(how))) if means else None


def _accuracies(rows: Sequence[dict[str, Any]]) -> dict[int, Accuracy]:
    return {r["n"]: _accuracy(r) for r in rows}


def build_report(store: Store, config: StudyConfig, study_id: str, trained: Sequence[TrainedVerifier],
                 label_run_ids: Sequence[str] = ()) -> StudyReport:
    if not trained:
        raise ValueError("a study report needs at least one trained verifier")
    run_ids = {run for t in trained for run in (*t.run_ids, *([t.beam_run_id] if t.beam_run_id else []))}
    results = store.query(internal_sql("study_eval_results"), {"run_ids": sorted(run_ids)}).as_dicts()
    by_run: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_run.setdefault(r["run_id"], []).append(r)
    largest = max(t.size for t in trained)
    datasets = []
    splits = {r["dataset"]: r["split"] for r in results if r["split"] != "validation"}
    for dataset in sorted(splits, key=lambda name: splits[name] != "test"):  # the fixed test pools first
        rows, scaling = [], []
        for t in trained:
            validation = [r for r in by_run.get(t.eval_run_id, []) if r["split"] == "validation"]
            test = [r for run in t.run_ids for r in by_run.get(run, [])
                    if r["split"] != "validation" and r["dataset"] == dataset]
            methods = ("orm_best_of_n",) if t.verifier == "orm" else STEP_METHODS
            for method in methods:
                model_rows = [r for r in test if r["method"] == method and r["model_id"] == t.model_id]
                how = None if method == "orm_best_of_n" else choose_aggregation(
                    [r for r in validation if r["model_id"] == t.model_id], method, config.selection_n)
                chosen = [r for r in model_rows if r["aggregation"] == how]
                if not chosen:
                    continue
                row = Row(t.verifier, t.size, method, how, t.model_id, _accuracies(chosen))
                if t.size == largest:
                    rows.append(row)
                if method != "prm_weighted_vote":
                    scaling.append(row)
        # pass@1 and majority need no verifier: the first largest-slice evaluation of this pool's.
        anchor = next(run for t in trained if t.size == largest for run in t.run_ids
                      if any(r["dataset"] == dataset and r["split"] != "validation" for r in by_run.get(run, [])))
        test = [r for r in by_run[anchor] if r["split"] != "validation" and r["dataset"] == dataset]
        baselines = [Row(m, None, m, None, None, _accuracies([r for r in test if r["method"] == m]))
                     for m in ("pass@1", "majority")]
        rows = [*baselines, *rows]
        ns = sorted({n for row in rows for n in row.by_n})
        problems = max((a.problems for row in rows for a in row.by_n.values()), default=0)
        diagnostics, seen = [], set()
        for d in store.query(internal_sql("study_diagnostics"),
                             {"run_ids": [run for t in trained if t.size == largest for run in t.run_ids]}).as_dicts():
            if d["dataset"] == dataset and (d["model_id"], d["aggregation"]) not in seen:  # the ORM rides along
                seen.add((d["model_id"], d["aggregation"]))
                diagnostics.append(d)
        beam = [b for t in trained if t.beam_run_id for b in beam_rows(
            t.verifier, [r for r in by_run.get(t.beam_run_id, []) if r["dataset"] == dataset and r["split"] != "validation"])]
        paired = paired_vs_majority(store, config, dataset, rows, study_id) if splits[dataset] == "test" else []
        datasets.append(DatasetReport(dataset, splits[dataset], problems, ns, rows, scaling, diagnostics,
                                      judge_bar(rows, scaling, config.selection_n, paired), beam, paired))
    models = {m["model_id"]: m for m in store.query(internal_sql("study_models"),
                                                    {"model_ids": [t.model_id for t in trained]}).as_dicts()}
    costs = []
    for t in trained:
        m = models[t.model_id]
        snapshot = json.loads(m["data_snapshot"]) if isinstance(m["data_snapshot"], str) else m["data_snapshot"]
        parts = (m["solution_tokens"], m["rollout_tokens"], m["training_tokens"])
        costs.append({"verifier": t.verifier, "size": t.size, "model_id": t.model_id,
                      "train_solutions": snapshot.get("train_solutions"), "val_solutions": snapshot.get("val_solutions"),
                      "solution_tokens": parts[0], "rollout_tokens": parts[1], "training_tokens": parts[2],
                      "total_tokens": None if None in parts else sum(parts)})
    gold = _gold(store, config, [t for t in trained if t.size == largest and t.verifier != "orm"])
    pb_runs = [t.processbench_run_id for t in trained if t.processbench_run_id]
    processbench = store.query(internal_sql("study_processbench"), {"run_ids": pb_runs}).as_dicts() if pb_runs else []
    names = {t.model_id: t.verifier for t in trained}
    for p in processbench:
        p["verifier"] = names.get(p["model_id"], p["model_id"])
    stage_runs = sorted({*label_run_ids, *run_ids, *pb_runs})
    times = store.query(internal_sql("study_stage_times"),
                        {"run_ids": stage_runs, "model_ids": [t.model_id for t in trained]}).as_dicts()
    return StudyReport(study_id, config.selection_n, sorted({t.size for t in trained}), datasets, costs, gold,
                       processbench, times)


def beam_rows(verifier: str, results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each beam width of one search next to the same verifier's best-of-N (same aggregation) and
    majority vote at the largest N that generated no more tokens per problem."""
    searches = [r for r in results if r["method"].startswith("beam")]
    out = []
    for search in sorted(searches, key=lambda r: r["n"]):
        def cheaper(method: str, aggregation: str | None) -> dict[str, Any] | None:
            rows = [r for r in results if r["method"] == method and r["aggregation"] == aggregation
                    and r["tokens"] is not None and r["tokens"] <= search["tokens"]]
            top = max(rows, key=lambda r: r["n"], default=None)
            return None if top is None else {"n": top["n"], "tokens": top["tokens"], **asdict(_accuracy(top))}
        out.append({"verifier": verifier, "method": search["method"], "aggregation": search["aggregation"],
                    "width": search["n"], "tokens": search["tokens"], **asdict(_accuracy(search)),
                    "best_of_n": cheaper("prm_best_of_n", search["aggregation"]),
                    "majority": cheaper("majority", None)})
    return out


def problems_for_separation(better: float, baseline: float, z: float = 1.96) -> int | None:
    """Test problems at which two accuracies this far apart would have non-overlapping 95%
    intervals (normal approximation: z * (se_better + se_baseline) < the gap); None without a gap."""
    gap = better - baseline
    if gap <= 0:
        return None
    spread = math.sqrt(better * (1 - better)) + math.sqrt(baseline * (1 - baseline))
    return math.ceil((z * spread / gap) ** 2)


PAIRED_CONFIDENCE = 0.975  # each one-sided bound at 97.5%: a two-sided 95% interval
PAIRED_RESAMPLES = 10_000


def paired_vs_majority(store: Store, config: StudyConfig, dataset: str, rows: Sequence[Row],
                       run_id: str) -> list[dict[str, Any]]:
    """Each verifier row at N = ``selection_n`` minus majority vote on the same candidates of the
    same test problems, with a paired bootstrap (see the module docstring). The per-problem
    outcomes are recomputed from the store and must reproduce the stored accuracies."""
    from tasks.best_of_n import model_candidates
    from tasks.diagnostics import paired_bootstrap
    from tasks.evaluation import selection_outcomes
    from tasks.pools import ensure_generated_pool
    from tasks.registry import get_model

    n = config.selection_n
    settings = next((d for d in config.eval.datasets if d.name == dataset), None)
    measured = [r for r in rows if r.size is not None and n in r.by_n]
    if settings is None or not measured:
        return []
    pool = ensure_generated_pool(store, settings, config.eval, run_id)  # complete: samples nothing
    out = []
    for row in measured:
        keys, problems = model_candidates(store, pool, get_model(store, row.model_id), config.eval)
        verifier = selection_outcomes(problems, n, keys, row.method, row.aggregation, seed=config.eval.seed)
        majority = selection_outcomes(problems, n, keys, "majority", seed=config.eval.seed)
        stored = row.by_n[n]
        if len(verifier) != stored.problems or abs(sum(verifier) / len(verifier) - stored.value) > 1e-9:
            raise ValueError(f"{row.name} {row.method} on {dataset}: recomputed {sum(verifier)}/{len(verifier)} "
                             f"outcomes, stored accuracy {stored.value} over {stored.problems} problems")
        c = paired_bootstrap(verifier, majority, confidence=PAIRED_CONFIDENCE, n_boot=PAIRED_RESAMPLES,
                             seed=config.eval.seed)
        out.append({"verifier": row.name, "method": row.method, "aggregation": row.aggregation, "n": n,
                    "problems": c.items, "accuracy": c.candidate_mean, "majority": c.baseline_mean,
                    "difference": c.difference, "ci_low": c.ci_low, "ci_high": c.ci_high, "p_better": c.p_better})
    return out


def _accuracy(r: dict[str, Any]) -> Accuracy:
    return Accuracy(r["accuracy"], r["ci_low"], r["ci_high"], r["problems"])


def judge_bar(rows: Sequence[Row], scaling: Sequence[Row], n: int,
              paired: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Did a factory-trained verifier beat majority by BAR_MARGIN at N = n with non-overlapping
    intervals? With the best verifier's and the oracle's margins either way, and the best
    verifier's paired difference when ``paired`` has it."""
    majority = next((r.by_n.get(n) for r in rows if r.method == "majority"), None)
    if majority is None:
        return {"n": n, "met": False, "text": f"no majority vote at N = {n} on this pool"}
    candidates = [(r, r.by_n[n]) for r in rows if r.size is not None and n in r.by_n]
    factory = [(r, a) for r, a in candidates if r.name != "oracle"]
    oracle = [(r, a) for r, a in candidates if r.name == "oracle"]

    def describe(row: Row, acc: Accuracy) -> str:
        how = f" ({row.aggregation})" if row.aggregation else ""
        return (f"{row.name} {row.method}{how}: {acc.value:.3f} [{acc.ci_low:.2f}, {acc.ci_high:.2f}], "
                f"{acc.value - majority.value:+.3f} over majority")

    met = [(r, a) for r, a in factory  # a 10-point gain is 0.0999... in floating point: compare with slack
           if a.value - majority.value >= BAR_MARGIN - 1e-9 and a.ci_low > majority.ci_high]
    best = max(factory, key=lambda ra: ra[1].value, default=None)
    lines = [f"majority vote at N = {n}: {majority.value:.3f} [{majority.ci_low:.2f}, {majority.ci_high:.2f}]"]
    if met:
        lines.append("met by " + "; ".join(describe(r, a) for r, a in met))
    else:
        lines.append("not met" + (f"; best factory verifier: {describe(*best)}" if best else ""))
        needed = problems_for_separation(best[1].value, majority.value) if best else None
        if needed is not None:
            lines.append(f"at these accuracies, intervals stop overlapping at about {needed} test problems "
                         f"(this pool: {best[1].problems}; normal approximation)")
    if best is not None:
        pair = next((p for p in paired if (p["verifier"], p["method"], p["aggregation"])
                     == (best[0].name, best[0].method, best[0].aggregation)), None)
        if pair is not None:
            lines.append(f"paired on the same problems: {best[0].name} minus majority {pair['difference']:+.3f} "
                         f"[{pair['ci_low']:+.3f}, {pair['ci_high']:+.3f}] (95%)")
    if oracle:
        top = max(oracle, key=lambda ra: ra[1].value)
        lines.append(f"oracle ceiling (gold step labels): {describe(*top)}")
    trend = {}
    for r in scaling:
        if r.method != "prm_weighted_vote" and n in r.by_n:
            trend.setdefault(r.name, []).append((r.size, r.by_n[n].value))
    for name, points in trend.items():
        if len(points) > 1:
            lines.append(f"{name} with more data: " + ", ".join(f"{s} problems {v:.3f}" for s, v in sorted(points)))
    return {"n": n, "met": bool(met), "majority": asdict(majority),
            "best": None if best is None else {"verifier": best[0].name, "method": best[0].method,
                                                 "aggregation": best[0].aggregation, **asdict(best[1])},
            "text": "\n".join(lines)}


def _gold(store: Store, config: StudyConfig, step_verifiers: Sequence[TrainedVerifier]) -> dict[str, Any] | None:
    """The gold step check of the largest slice's step verifiers on the arith test pool (None when
    the pool is not arith or they have no scores there)."""
    from tasks.store import StoreError
    from tasks.verifiers.gold_check import gold_step_check

    if not step_verifiers or not any(d.name == "arith" for d in config.eval.datasets):
        return None
    try:
        check = gold_step_check(store, [t.model_id for t in step_verifiers])
    except StoreError:
        return None
    names = {t.model_id: t.verifier for t in step_verifiers}
    data = asdict(check)
    for scorer in data["scorers"]:
        model_id, _, readout = scorer["scorer"].partition(":")
        scorer["verifier"] = names.get(model_id, model_id) + (f":{readout}" if readout else "")
    return data


# --- presentation -------------------------------------------------------------------------------


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return out


def _number(value: float | None, fmt: str = ".3f") -> str:
    return "n/a" if value is None else f"{value:{fmt}}"


def _name(row: Row) -> str:
    if row.size is None:
        return row.name
    method = {"prm_best_of_n": "best-of-N", "prm_weighted_vote": "weighted vote", "orm_best_of_n": "best-of-N"}
    return f"{row.name} {method.get(row.method, row.method)}" + (f" ({row.aggregation})" if row.aggregation else "")


def markdown(report: StudyReport, config: StudyConfig, command: str, wall_s: float | None) -> str:
    n = report.selection_n
    lines = [f"# prmf study {report.study_id}", "",
             f"Command: `{command}`  ", f"Store: `{config.db}`  ",
             f"Slices: {', '.join(str(s) for s in report.sizes)} problems of {config.label.dataset.name} "
             f"{config.label.dataset.split or ''} (strategy {config.label.strategy}, M = {config.label.solutions}, "
             f"N = {config.label.rollouts}); base model {config.train.base_model}, {config.train.epochs} epochs, "
             f"lr {config.train.lr}." + (f"  \nWall time of this invocation: {wall_s / 60:.1f} min (stages found in the "
                                         "store cost nothing; their compute time is in the last table)."
                                         if wall_s is not None else ""), "",
             f"Aggregations are chosen on the validation pools at N = {n}; the test pools only report. Intervals are "
             "95% bootstrap intervals over problems. The implicit PRM's step scores are read out as "
             f"`{config.eval.implicit_readout}`.", ""]
    for d in report.datasets:
        largest = max(report.sizes)
        lines += [f"## {d.dataset} {d.split} ({d.problems} problems), verifiers trained on {largest} problems", "",
                  "**The bar** (a factory verifier beats majority by 10 points at N = "
                  f"{n} with non-overlapping intervals): **{'met' if d.bar['met'] else 'not met'}**", ""]
        lines += [f"- {line}" for line in d.bar["text"].splitlines()] + [""]
        majority = next((r.by_n.get(n) for r in d.rows if r.method == "majority"), None)
        lines += _table(["method", *(f"N = {k}" for k in d.ns), f"minus majority at N = {n}"],
                        [[_name(r), *(r.by_n[k].cell() if k in r.by_n else "" for k in d.ns),
                          "" if majority is None or n not in r.by_n or r.method == "majority"
                          else f"{r.by_n[n].value - majority.value:+.3f}"] for r in d.rows]) + [""]
        if d.paired:
            lines += [f"### Paired with majority vote at N = {n} (same candidates, same problems)", "",
                      "Per-problem outcomes recomputed from the stored candidates and scores; 95% paired-bootstrap "
                      f"intervals over the {d.paired[0]['problems']} problems.", ""]
            lines += _table(["verifier", "method", "accuracy", "majority", "difference [95%]", "P(better)"],
                            [[p["verifier"], p["method"] + (f" ({p['aggregation']})" if p["aggregation"] else ""),
                              f"{p['accuracy']:.3f}", f"{p['majority']:.3f}",
                              f"{p['difference']:+.3f} [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}]",
                              f"{p['p_better']:.3f}"] for p in d.paired]) + [""]
        if d.beam:
            b0 = d.beam[0]
            lines += [f"### Beam search guided by {b0['verifier']} (the best step verifier on validation), "
                      f"answer by {b0['aggregation']}: `{b0['method']}`", "",
                      "Each beam width B next to best-of-N of the same verifier and majority vote at the largest N "
                      "that generated no more tokens per problem.", ""]

            def matched(m: dict[str, Any] | None) -> str:
                if m is None:
                    return ""
                return f"N = {m['n']}: {m['value']:.3f} [{m['ci_low']:.2f}, {m['ci_high']:.2f}] at {m['tokens']:.0f}"

            lines += _table(["B", "tokens/problem", "beam accuracy", "best-of-N at no more tokens",
                             "majority at no more tokens"],
                            [[b["width"], f"{b['tokens']:.0f}", f"{b['value']:.3f} [{b['ci_low']:.2f}, {b['ci_high']:.2f}]",
                              matched(b["best_of_n"]), matched(b["majority"])] for b in d.beam]) + [""]
        names = list(dict.fromkeys(r.name for r in d.scaling))
        lines += [f"### Data scaling: best-of-N at N = {n} by slice", ""]
        lines += _table(["verifier", *(f"{s} problems" for s in report.sizes)],
                        [[name, *(next((r.by_n[n].cell() for r in d.scaling
                                        if r.name == name and r.size == s and n in r.by_n), "") for s in report.sizes)]
                         for name in names]) + [""]
        if d.diagnostics:
            lines += ["### Scorer diagnostics (test pool, every candidate)", ""]
            names_by_model = {r.model_id: r.name for r in d.rows if r.model_id}
            lines += _table(["verifier", "score", "AUC vs correctness", "Spearman vs steps", "Spearman vs tokens",
                             "truncated"],
                            [[names_by_model.get(x["model_id"], x["model_id"]), x["aggregation"] or "outcome",
                              _number(x["auc"]), _number(x["spearman_steps"]), _number(x["spearman_tokens"]),
                              x["truncated"]] for x in d.diagnostics]) + [""]
    if report.gold:
        g = report.gold
        lines += [f"## Step scores vs arith gold step labels ({g['problems']} problems, {g['non_final_steps']} "
                  f"non-final steps, {g['non_final_gold_correct']} gold-correct)", ""]

        def interval(i: dict[str, Any] | None, fmt: str = ".3f") -> str:
            if not i or i["value"] is None:
                return ""
            return (f"{i['value']:{fmt}} [{i['ci_low']:{fmt}}, {i['ci_high']:{fmt}}]" if i["ci_low"] is not None
                    else f"{i['value']:{fmt}}")

        first = g["scorers"][0]["verifier"]
        lines += _table(["verifier", "AUC non-final steps", "AUC all steps", f"minus {first}"],
                        [[s["verifier"], interval(s["non_final"]), interval(s["all_steps"]),
                          interval(s["non_final_minus_first"], "+.3f")] for s in g["scorers"]]) + [""]
    lines += ["## Cost (tokens)", ""]
    lines += _table(["verifier", "slice", "train / val solutions", "solutions", "rollouts", "training", "total"],
                    [[c["verifier"], c["size"], f"{c['train_solutions']} / {c['val_solutions']}", c["solution_tokens"],
                      c["rollout_tokens"], c["training_tokens"], c["total_tokens"]] for c in report.costs]) + [""]
    if report.processbench:
        lines += ["## ProcessBench (math split, threshold chosen on gsm8k)", ""]
        lines += _table(["verifier", "samples", "threshold", "error acc", "correct acc", "F1"],
                        [[p["verifier"], p["samples"], _number(p["threshold"]), _number(p["error_accuracy"]),
                          _number(p["correct_accuracy"]), _number(p["f1"])] for p in report.processbench]) + [""]
    if report.times:
        lines += ["## Compute time (from the store: adds up across resumed invocations)", ""]
        rows, total = [], 0.0
        for stage in ("label", "train", "evaluate", "processbench"):
            seconds = [t["seconds"] for t in report.times if t["stage"] == stage and t["seconds"] is not None]
            if seconds:
                rows.append([stage + (" (training loops)" if stage == "train" else ""), len(seconds),
                             f"{sum(seconds) / 60:.1f}"])
                total += sum(seconds)
        lines += _table(["stage", "runs", "minutes"], [*rows, ["total", "", f"{total / 60:.1f}"]]) + [""]
    for name, file in report.plots.items():
        lines += [f"![{name}]({Path(file).name})", ""]
    return "\n".join(lines)


def plot_report(report: StudyReport, folder: Path) -> dict[str, Path]:
    """accuracy-vs-N (largest slice, chosen aggregations) and accuracy-vs-cost (every slice, at
    ``selection_n``) PNGs, one panel per test dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tasks.best_of_n import _png

    if not report.datasets:
        return {}
    cost = {(c["verifier"], c["size"]): c["total_tokens"] for c in report.costs}
    paths = {"accuracy vs N": folder / "accuracy-vs-n.png", "accuracy vs cost": folder / "accuracy-vs-cost.png"}
    fig, axes = plt.subplots(1, len(report.datasets), figsize=(6 * len(report.datasets), 4.2), squeeze=False)
    colors = plt.get_cmap("tab20").colors  # a study plots up to ~14 lines: no colour may repeat
    for ax, d in zip(axes[0], report.datasets):
        for i, r in enumerate(d.rows):
            ns = sorted(r.by_n)
            values = [r.by_n[k].value for k in ns]
            err = [[r.by_n[k].value - r.by_n[k].ci_low for k in ns], [r.by_n[k].ci_high - r.by_n[k].value for k in ns]]
            ax.errorbar(ns, values, yerr=err, marker="o", capsize=2, label=_name(r), color=colors[i % len(colors)],
                        linestyle="--" if r.size is None else "-")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N (candidates)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{d.dataset} {d.split}, {d.problems} problems")
        ax.legend(fontsize=7)
    _png(fig, paths["accuracy vs N"])
    fig, axes = plt.subplots(1, len(report.datasets), figsize=(6 * len(report.datasets), 4.2), squeeze=False)
    n = report.selection_n
    for ax, d in zip(axes[0], report.datasets):
        names = list(dict.fromkeys(r.name for r in d.scaling))
        for name in names:
            points = sorted((cost[(r.name, r.size)], r.by_n[n]) for r in d.scaling
                            if r.name == name and n in r.by_n and cost.get((r.name, r.size)) is not None)
            if points:
                ax.errorbar([p[0] for p in points], [a.value for _, a in points],
                            yerr=[[a.value - a.ci_low for _, a in points], [a.ci_high - a.value for _, a in points]],
                            marker="o", capsize=2, label=name)
        majority = next((r.by_n.get(n) for r in d.rows if r.method == "majority"), None)
        if majority is not None:
            ax.axhline(majority.value, color="gray", linestyle="--", label="majority")
        ax.set_xscale("log")
        ax.set_xlabel("tokens spent on the verifier (generated + trained)")
        ax.set_ylabel(f"best-of-N accuracy, N = {n}")
        ax.set_title(f"{d.dataset} {d.split}")
        ax.legend(fontsize=7)
    _png(fig, paths["accuracy vs cost"])
    return paths


def write_report(report: StudyReport, config: StudyConfig, folder: Path, command: str,
                 wall_s: float | None) -> tuple[Path, str]:
    """report.md, report.json and the PNGs in ``folder``; returns the markdown's path and text."""
    folder.mkdir(parents=True, exist_ok=True)
    report.plots = {name: str(path) for name, path in plot_report(report, folder).items()}
    text = markdown(report, config, command, wall_s)
    (folder / "report.md").write_text(text)
    (folder / "report.json").write_text(json.dumps(asdict(report), indent=1, default=str))
    return folder / "report.md", text


def embedded_images(text: str, plots: dict[str, str]) -> str:
    """The markdown with each PNG inlined (Prefect artifacts cannot read local files)."""
    for name, file in plots.items():
        data = base64.b64encode(Path(file).read_bytes()).decode()
        text = text.replace(f"![{name}]({Path(file).name})", f"![{name}](data:image/png;base64,{data})")
    return text
