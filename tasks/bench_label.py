"""``prmf bench label``: labelling strategies side by side on the same stored solutions.

One engine (in this process) samples M solutions for P arith problems into a base store. Each
strategy then labels a copy of that store, so every strategy starts from the same solutions and
none reuses another's rollouts. Per strategy: completer requests (work units), rollouts,
generated tokens, tokens per labelled step, wall time, tokens/s, HE agreement with the arith
gold step labels and with naive's labels, the share of inferred labels, and each figure's ratio
to naive. Agreement intervals are a problem-level bootstrap (steps of one problem are not
independent); the difference to naive is paired on the same resampled problems.

The raw engine figure: the naive workload's prompts (every distinct non-final prefix, n = N)
sent straight to the engine in one call, the best the factory's labelling loop could reach.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks.config import LabelConfig
from tasks.labelling.strategies import MODIFIERS, STRATEGY_NAMES, parse_strategy
from tasks.store import Store, internal_sql

RESAMPLES = 2000


@dataclass
class StrategyResult:
    strategy: str
    requests: int  # work units computed (one prompt each)
    rollouts: int
    tokens: int
    wall_s: float
    labelled_steps: int  # distinct non-final step prefixes with an HE label (measured or inferred)
    inferred_steps: int
    open_steps: int  # left unlabelled (a contradiction spans them)
    contradictions: int
    gold_steps: int
    gold_agreement: float | None
    gold_ci: tuple[float, float] | None
    naive_agreement: float | None = None  # HE equal to naive's on the steps both labelled
    gold_vs_naive: tuple[float, float, float] | None = None  # difference, 95% interval
    ratios: dict[str, float] = field(default_factory=dict)  # figure / naive's figure

    @property
    def tokens_per_labelled_step(self) -> float | None:
        return self.tokens / self.labelled_steps if self.labelled_steps else None

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.wall_s if self.wall_s else None


@dataclass
class RawEngine:
    prompts: int
    n: int
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def run(config: LabelConfig, strategies: list[str], workdir: Path, progress: Any = print) -> dict[str, Any]:
    from tasks.completers import get_completer
    from tasks.generation import generate_solutions
    from tasks.ingest import ingest_problems
    from tasks.labelling.labeller import label_solutions

    unknown = [s for s in strategies if parse_strategy(s)[0] not in STRATEGY_NAMES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; known: {', '.join(STRATEGY_NAMES)}, each optionally "
                         f"+{', +'.join(MODIFIERS)}")
    if "naive" not in strategies:
        strategies = ["naive", *strategies]  # every ratio is to naive
    workdir.mkdir(parents=True, exist_ok=True)
    base = workdir / "base.duckdb"
    if base.exists():
        base.unlink()
    completer = get_completer(config.completer_settings)
    progress(f"sampling {config.solutions} solutions for {config.dataset.limit} {config.dataset.name} problems")
    with Store(base) as store:
        problem_ids = ingest_problems(store, config.dataset).problem_ids
        generate_solutions(store, problem_ids, config, "bench-generate", completer)
        raw = _raw_engine(store, problem_ids, config, completer)
        store.query("CHECKPOINT")
    progress(f"raw engine: {raw.tokens} tokens in {raw.seconds:.1f} s ({raw.tokens_per_s:.1f} tokens/s)")
    results, labels = [], {}
    for name in strategies:
        path = workdir / f"{name.replace('+', '-')}.duckdb"
        if path.exists():
            path.unlink()
        with Store(base) as store:
            store.backup(path)
        with Store(path) as store:
            progress(f"labelling with {name}")
            started = time.perf_counter()
            label_solutions(store, problem_ids, config.model_copy(update={"strategy": name, "db": path}),
                            f"bench-{name}", completer)
            wall = time.perf_counter() - started
            result, labels[name] = _measure(store, name, wall)
        results.append(result)
        progress(f"  {name}: {result.tokens} tokens, {result.labelled_steps} labelled steps, {wall:.1f} s")
    _compare(results, labels)
    return {
        "config": {"dataset": config.dataset.name, "split": config.dataset.split, "problems": len(problem_ids),
                   "solutions": config.solutions, "rollouts": config.rollouts,
                   "rollout_max_tokens": config.rollout.max_tokens, "completer": completer.identity},
        "raw_engine": {**asdict(raw), "tokens_per_s": raw.tokens_per_s},
        "factory_vs_raw_engine": results[0].tokens_per_s / raw.tokens_per_s if results[0].tokens_per_s else None,
        "strategies": [{**asdict(r), "tokens_per_labelled_step": r.tokens_per_labelled_step,
                        "tokens_per_s": r.tokens_per_s} for r in results],
    }


def _raw_engine(store: Store, problem_ids: list[str], config: LabelConfig, completer: Any) -> RawEngine:
    """Naive's prompts (each distinct non-final prefix once, n = N) in one engine call."""
    from tasks.completers import request_seeds
    from tasks.generation import prompt_style
    from tasks.labelling.labeller import Labeller
    from tasks.steps import build_messages

    labeller = Labeller(store, config.model_copy(update={"strategy": "naive"}), "bench-raw", completer)
    prompts = {}
    for s in labeller.solutions(problem_ids):
        for i in range(1, s.num_steps):
            prompts.setdefault((s.problem["problem_id"], s.prefix_hash(i)), completer.chat_prompt(
                build_messages(s.problem["question"], prompt_style(s.problem), s.step_format), s.prefix(i)))
    started = time.perf_counter()
    # Seeded as the factory's units are (a seed per prompt), so the two figures compare like for like.
    outputs = completer.complete(list(prompts.values()), config.rollouts, config.rollout,
                                 request_seeds(config.rollout, [f"{p}:{h}" for p, h in prompts]))
    seconds = time.perf_counter() - started
    return RawEngine(len(prompts), config.rollouts, sum(c.num_tokens for group in outputs for c in group), seconds)


def _measure(store: Store, name: str, wall: float) -> tuple[StrategyResult, dict[tuple[str, int], tuple[str, bool, bool | None]]]:
    requests, rollouts, tokens = store.query(internal_sql("bench_label_cost")).rows[0]
    rows = store.query(internal_sql("bench_step_labels")).rows  # problem, prefix, he, inferred, gold
    markers = store.query("SELECT coalesce(sum(open_steps), 0), coalesce(sum(contradictions), 0) FROM labelled_solutions").rows[0]
    labels = {(problem, prefix): (problem, he, gold) for problem, prefix, he, inferred, gold in rows}
    agreement, ci = _bootstrap_agreement({name: labels})[name]
    gold_steps = sum(gold is not None for _, _, gold in labels.values())
    return StrategyResult(
        strategy=name, requests=int(requests), rollouts=int(rollouts), tokens=int(tokens or 0), wall_s=wall,
        labelled_steps=len(rows), inferred_steps=sum(bool(r[3]) for r in rows), open_steps=int(markers[0]),
        contradictions=int(markers[1]), gold_steps=gold_steps, gold_agreement=agreement, gold_ci=ci,
    ), labels


def _per_problem(labels: dict) -> dict[str, tuple[int, int]]:
    """problem -> (steps whose HE equals gold, steps with gold)."""
    counts: dict[str, list[int]] = {}
    for problem, he, gold in labels.values():
        if gold is None:
            continue
        c = counts.setdefault(problem, [0, 0])
        c[0] += int(he == gold)
        c[1] += 1
    return {p: (a, n) for p, (a, n) in counts.items()}


def _bootstrap_agreement(by_strategy: dict[str, dict], baseline: str | None = None, seed: int = 0):
    """Agreement with gold and its 95% problem-bootstrap interval per strategy; with ``baseline``,
    the paired difference to it instead."""
    per = {name: _per_problem(labels) for name, labels in by_strategy.items()}
    problems = sorted(set().union(*per.values()))
    if not problems:
        return {name: (None, None) for name in by_strategy}
    rng = random.Random(seed)
    draws = [[rng.choice(problems) for _ in problems] for _ in range(RESAMPLES)]

    def agreement(name: str, sample: list[str]) -> float | None:
        agree = sum(per[name].get(p, (0, 0))[0] for p in sample)
        total = sum(per[name].get(p, (0, 0))[1] for p in sample)
        return agree / total if total else None

    out = {}
    for name in by_strategy:
        point = agreement(name, problems)
        if baseline is None:
            values = sorted(v for v in (agreement(name, d) for d in draws) if v is not None)
        else:
            base_point = agreement(baseline, problems)
            point = None if point is None or base_point is None else point - base_point
            pairs = ((agreement(name, d), agreement(baseline, d)) for d in draws)
            values = sorted(a - b for a, b in pairs if a is not None and b is not None)
        ci = (values[int(0.025 * len(values))], values[int(0.975 * len(values)) - 1]) if values else None
        out[name] = (point, ci)
    return out


def _compare(results: list[StrategyResult], labels: dict[str, dict]) -> None:
    naive = results[0]
    diffs = _bootstrap_agreement(labels, baseline="naive")
    for r in results:
        shared = [k for k in labels[r.strategy] if k in labels["naive"]]
        r.naive_agreement = (sum(labels[r.strategy][k][1] == labels["naive"][k][1] for k in shared) / len(shared)
                             if shared else None)
        point, ci = diffs[r.strategy]
        r.gold_vs_naive = (point, *ci) if point is not None and ci is not None else None
        for figure in ("requests", "rollouts", "tokens", "wall_s", "tokens_per_labelled_step", "tokens_per_s",
                       "labelled_steps"):
            mine, theirs = getattr(r, figure), getattr(naive, figure)
            if mine is not None and theirs:
                r.ratios[figure] = mine / theirs


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[tuple]]:
    """The printed table: cost, then quality. `fewer` is naive's tokens per labelled step over this one's."""
    columns = ["strategy", "requests", "tokens", "labelled", "tok/step", "fewer", "wall s", "tok/s",
               "HE=gold [95% CI]", "minus naive [95% CI]", "HE=naive", "inferred", "contra."]
    rows = []
    for r in report["strategies"]:
        gold = "n/a" if r["gold_agreement"] is None else (
            f"{r['gold_agreement']:.3f} [{r['gold_ci'][0]:.2f}, {r['gold_ci'][1]:.2f}]")
        diff = "" if r["strategy"] == "naive" or not r["gold_vs_naive"] else (
            f"{r['gold_vs_naive'][0]:+.3f} [{r['gold_vs_naive'][1]:+.2f}, {r['gold_vs_naive'][2]:+.2f}]")
        per_step = r["tokens_per_labelled_step"]
        ratio = r["ratios"].get("tokens_per_labelled_step")
        rows.append((
            r["strategy"], r["requests"], r["tokens"], r["labelled_steps"],
            f"{per_step:.1f}" if per_step is not None else "n/a",
            f"{1 / ratio:.2f}x" if ratio else "n/a",
            f"{r['wall_s']:.1f}", f"{r['tokens_per_s']:.1f}" if r["tokens_per_s"] else "n/a", gold, diff,
            f"{r['naive_agreement']:.3f}" if r["naive_agreement"] is not None else "n/a",
            f"{r['inferred_steps'] / r['labelled_steps']:.0%}" if r["labelled_steps"] else "n/a",
            r["contradictions"],
        ))
    return columns, rows


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
