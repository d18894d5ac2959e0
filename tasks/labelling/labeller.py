"""Step labelling driven by a strategy: rollouts in rounds, labels measured or inferred.

A labelling strategy (``strategies.py``) says, for one solution and what has been measured so
far, which prefixes get rollouts next and how many. This module does the work: it replays the
stored measurements, asks every open solution's strategy for its next round, turns the requests
into *work units*, computes them through the shared work queue (claim -> engine off-lock ->
grade -> store with the claims' release; ``tasks/leases.py``), and repeats until no strategy
asks for more. A finished solution's inferred labels, contradictions and a completion marker
(``labelled_solutions``) are stored in one transaction.

A unit is one round of rollouts from one prefix, keyed by (problem, prefix text, completer,
sampling, evaluation, budget, round): solutions that share a prefix share its rollouts, and a
stored unit is never redone. The *evaluation* is how a prefix is rolled out: ``math_shepherd``
(N rollouts at once; naive, binary search, and the bare question under ``+root``) or
``early_stop`` (rounds until a correct one), so naive and binary search share units, and round 0 of a full-budget prefix has the key units had
before strategies existed. Because strategies keep no hidden state, a killed run resumes by
replaying what is stored and asking again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from tasks.completers import (
    Completer, CompleterError, Completion, complete_adaptive, completer_session, get_completer, request_seeds,
)
from tasks.config import LabelConfig
from tasks.faults import checkpoint
from tasks.generation import prompt_style, solution_rows
from tasks.grading import Grader, GradeResult, extract_answer
from tasks.labelling.strategies import (
    ROOT,
    FullBudget,
    LabelStrategy,
    Measurement,
    RolloutRequest,
    SolutionState,
    StepLabel,
    infer_labels,
    parse_strategy,
    prefix_evaluator,
    strategy,
)
from tasks.leases import process_claimed
from tasks.models import resolve_model
from tasks.progress import progress
from tasks.steps import StepFormat, build_messages, prefix_text
from tasks.store import Store, StoreError, content_key, internal_sql

ROOT_PREFIX_HASH = content_key("")  # the bare question: no step written yet


def evaluation_name(strategy_name: str) -> str:
    """How the strategy rolls out a prefix, as stored in ``work_units.strategy``."""
    return "early_stop" if "early_stop" in strategy_name.split("+") else "math_shepherd"


def unit_key(problem_id: str, prefix_hash: str, completer: str, params: str, evaluation: str, budget: int,
             round_: int) -> str:
    parts: list[object] = [problem_id, prefix_hash, completer, params, evaluation, budget]
    if round_:  # round 0 keeps the key of the units stored before rounds existed
        parts.append(round_)
    return content_key(*parts)


def label_key(completer: str, params: str, strategy_name: str, budget: int) -> str:
    return content_key("label", completer, params, strategy_name, budget)


@dataclass(frozen=True)
class Solution:
    solution_id: str
    problem: dict[str, Any]
    texts: tuple[str, ...]
    prefix_hashes: tuple[str, ...]  # of prefixes 1..num_steps
    correct: bool
    step_format: StepFormat = "line"
    # +reuse: the parent prefix length this rollout continued (None: sampled by the generator).
    # Its own rollouts are not reused again.
    reused_from: int | None = None

    @property
    def reused(self) -> bool:
        return self.reused_from is not None

    @property
    def num_steps(self) -> int:
        return len(self.texts)

    def prefix_hash(self, step_index: int) -> str:
        return ROOT_PREFIX_HASH if step_index == ROOT else self.prefix_hashes[step_index - 1]

    def prefix(self, step_index: int) -> str:
        return "" if step_index == ROOT else prefix_text(list(self.texts), step_index, self.step_format)


def filter_reasons(solutions: list[Solution]) -> dict[str, str]:
    """``+filter``: problem -> why its step prefixes get no rollouts: all its solutions are
    correct (``all_correct``) or all wrong (``all_wrong``)."""
    outcomes: dict[str, set[bool]] = {}
    for s in solutions:
        outcomes.setdefault(s.problem["problem_id"], set()).add(s.correct)
    return {p: "all_correct" if seen == {True} else "all_wrong" for p, seen in outcomes.items() if len(seen) == 1}


@dataclass(frozen=True)
class WorkUnit:
    unit_id: str
    solution: Solution  # the first solution (and step) that asked for it
    step_index: int
    n: int
    round: int

    @property
    def problem(self) -> dict[str, Any]:
        return self.solution.problem


@dataclass(frozen=True)
class LabelSummary:
    units_total: int  # units of these solutions' evaluation: stored before, plus those asked for now
    units_done_before: int  # already stored when the call started
    units_labelled: int  # computed and stored by this call
    units_by_other_runs: int  # stored meanwhile by another runner sharing the store
    units_recomputed: int  # computed here but stored first by another runner (a lease that lapsed)
    rollouts: int
    tokens: int
    engine_seconds: float
    solutions_labelled: int = 0  # solutions whose labelling finished in this call
    rounds: int = 0
    inferred_steps: int = 0
    contradictions: int = 0
    reused_rollouts: int = 0  # rollouts made solutions by +reuse in this call

    @classmethod
    def nothing(cls) -> "LabelSummary":
        """The summary of a run that had no problem to work on."""
        return cls(0, 0, 0, 0, 0, 0, 0, 0.0)


@dataclass
class _Tally:
    total: set[str] = field(default_factory=set)
    before: int = 0
    labelled: int = 0
    elsewhere: int = 0
    recomputed: int = 0
    rollouts: int = 0
    tokens: int = 0
    engine_seconds: float = 0.0
    solutions: int = 0
    rounds: int = 0
    inferred: int = 0
    contradictions: int = 0
    reused: int = 0


class Labeller:
    """One label run's view of the store: the solutions, the strategy and the unit keys."""

    def __init__(self, store: Store, config: LabelConfig, run_id: str, completer: Completer):
        self.store, self.config, self.run_id, self.completer = store, config, run_id, completer
        self.strategy: LabelStrategy = strategy(config.strategy, config.rollouts)
        self.prefix_evaluator = prefix_evaluator(config.strategy, config.rollouts)
        self.params = config.rollout.key()
        self.evaluation = evaluation_name(config.strategy)
        self.label_key = label_key(completer.identity, self.params, config.strategy, config.rollouts)
        modifiers = parse_strategy(config.strategy)[1]
        self.filter = "filter" in modifiers
        self.reuse = "reuse" in modifiers

    def evaluation_of(self, step_index: int) -> str:
        # The bare question always gets the full budget: its solve rate, not a first-error search.
        return "math_shepherd" if step_index == ROOT else self.evaluation

    def settled(self, step_index: int, measured: Measurement) -> bool:
        """No more rounds will be asked of this prefix (the evaluator that measures it says so)."""
        evaluator = FullBudget(self.config.rollouts) if step_index == ROOT else self.prefix_evaluator
        return evaluator.next_round(measured) is None

    def unit_id(self, solution: Solution, step_index: int, round_: int) -> str:
        return unit_key(solution.problem["problem_id"], solution.prefix_hash(step_index), self.completer.identity,
                        self.params, self.evaluation_of(step_index), self.config.rollouts, round_)

    # --- reading the store ------------------------------------------------------------------

    def solutions(self, problem_ids: list[str]) -> list[Solution]:
        """The generator's solutions of these problems."""
        generator = resolve_model(self.config.generator.model).identity
        return self._solutions(problem_ids, self.store.solution_steps(problem_ids, generator))

    def reused_solutions(self, problem_ids: list[str]) -> list[Solution]:
        """The solutions this labelling made from rollouts (``+reuse``) for these problems."""
        rows = self.store.query(internal_sql("reused_solution_steps"), {"label_key": self.label_key},
                                tables={"ids": pa.table({"problem_id": pa.array(problem_ids, pa.string())})})
        return self._solutions(problem_ids, rows.as_dicts())

    def _solutions(self, problem_ids: list[str], step_rows: list[dict[str, Any]]) -> list[Solution]:
        problems = {p["problem_id"]: p for p in self.store.problems_by_id(problem_ids)}
        by_solution: dict[str, list[dict[str, Any]]] = {}
        for row in step_rows:
            by_solution.setdefault(row["solution_id"], []).append(row)
        return [
            Solution(sid, problems[steps[0]["problem_id"]], tuple(s["text"] for s in steps),
                     tuple(s["prefix_hash"] for s in steps), bool(steps[0]["correct"]), steps[0]["step_format"],
                     steps[0].get("parent_step"))
            for sid, steps in by_solution.items()
        ]

    def finished(self, solutions: list[Solution]) -> set[str]:
        wanted = pa.table({"solution_id": pa.array([s.solution_id for s in solutions], pa.string())})
        rows = self.store.query(internal_sql("labelled_solutions"), {"label_key": self.label_key},
                                tables={"wanted": wanted}).rows
        return {r[0] for r in rows}

    def stored_units(self, solutions: list[Solution]) -> int:
        """Units of this evaluation already stored for these solutions' prefixes."""
        return len(self._measurements(solutions))

    def _measurements(self, solutions: list[Solution]) -> dict[tuple[str, str, str, int], tuple[int, int]]:
        prefixes = {(s.problem["problem_id"], s.prefix_hash(i)) for s in solutions for i in range(0, s.num_steps)}
        wanted = pa.table({"problem_id": pa.array([p for p, _ in prefixes], pa.string()),
                           "prefix_hash": pa.array([h for _, h in prefixes], pa.string())})
        rows = self.store.query(internal_sql("prefix_measurements"), {
            "completer": self.completer.identity, "params": self.params, "budget": self.config.rollouts},
            tables={"wanted": wanted}).rows
        return {(problem, prefix, evaluation, round_): (n, k) for problem, prefix, evaluation, round_, n, k in rows
                if evaluation == self.evaluation_of(ROOT if prefix == ROOT_PREFIX_HASH else 1)}

    def states(self, solutions: list[Solution]) -> dict[str, SolutionState]:
        """Each solution's measurements so far, replayed from the stored units of this evaluation."""
        measured = self._measurements(solutions)
        states = {}
        for s in solutions:
            state = SolutionState(s.num_steps, s.correct)
            for i in range(0, s.num_steps):
                round_ = 0
                while (key := (s.problem["problem_id"], s.prefix_hash(i), self.evaluation_of(i), round_)) in measured:
                    state.observe(i, *measured[key])
                    round_ += 1
            if s.reused_from and s.reused_from in state.measured:  # else its text split otherwise than its parent's
                state.reused_from = s.reused_from
            states[s.solution_id] = state
        return states

    def filtered(self, solutions: list[Solution]) -> dict[str, str]:
        return filter_reasons(solutions) if self.filter else {}

    def requests(self, solution: Solution, state: SolutionState, filtered: dict[str, str]) -> list[RolloutRequest]:
        wanted = self.strategy.requests(state)
        if solution.problem["problem_id"] in filtered:
            return [r for r in wanted if r.step_index == ROOT]
        return wanted

    # --- one round --------------------------------------------------------------------------

    def units(self, requests: dict[str, list[RolloutRequest]], solutions: dict[str, Solution]) -> list[WorkUnit]:
        units: dict[str, WorkUnit] = {}
        for sid, wanted in requests.items():
            for r in wanted:
                key = self.unit_id(solutions[sid], r.step_index, r.round)
                units.setdefault(key, WorkUnit(key, solutions[sid], r.step_index, r.n, r.round))
        return list(units.values())

    def compute(self, batch: list[WorkUnit], grader: Grader) -> tuple[list[dict], list[dict], float]:
        """Sample and grade one batch (off the store's lock); its work_units and rollouts rows."""
        t0 = time.perf_counter()
        outputs = self._complete(batch)
        seconds = time.perf_counter() - t0
        checkpoint("label-batch-generated")
        unit_rows, rollout_rows = self._rows(batch, outputs, grader)
        return unit_rows, rollout_rows, seconds

    def _complete(self, batch: list[WorkUnit]) -> list[list[Completion]]:
        # One engine call per round size: most rounds have a single size (naive: all N).
        outputs: dict[str, list[Completion]] = {}
        for n in sorted({u.n for u in batch}):
            group = [u for u in batch if u.n == n]
            prompts = [self.completer.chat_prompt(
                build_messages(u.problem["question"], prompt_style(u.problem), u.solution.step_format),
                u.solution.prefix(u.step_index)) for u in group]
            try:
                results = complete_adaptive(self.completer, prompts, n, self.config.rollout,
                                            request_seeds(self.config.rollout, [u.unit_id for u in group]))
            except CompleterError as exc:
                first = group[0]
                more = f" and {len(group) - 1} more" if len(group) > 1 else ""
                raise CompleterError(
                    f"{exc} -- while labelling unit {first.unit_id} (problem {first.problem['problem_id']}, "
                    f"step {first.step_index}){more}; stored units are kept, rerun to resume"
                ) from exc
            outputs.update({u.unit_id: r for u, r in zip(group, results)})
        return [outputs[u.unit_id] for u in batch]

    def _rows(self, batch: list[WorkUnit], outputs: list[list[Completion]], grader: Grader):
        # The answer is read from prefix + rollout: the full solution the rollout completes.
        samples = [(u, c) for u, group in zip(batch, outputs) for c in group]
        answers = [extract_answer(u.solution.prefix(u.step_index) + c.text) for u, c in samples]
        grades = iter(zip(answers, grader.grade([(a, u.problem["gold_answer"], u.problem["answer_kind"])
                                                 for a, (u, _) in zip(answers, samples)])))
        unit_rows, rollout_rows = [], []
        for u, group in zip(batch, outputs):
            unit_rows.append({
                "unit_id": u.unit_id, "problem_id": u.problem["problem_id"],
                "prefix_hash": u.solution.prefix_hash(u.step_index), "completer_model": self.completer.identity,
                "params": self.params, "strategy": self.evaluation_of(u.step_index), "budget": self.config.rollouts,
                "solution_id": u.solution.solution_id, "step_index": u.step_index, "round": u.round, "n": u.n,
                "k": 0, "run_id": self.run_id,
            })
            for i, c in enumerate(group):
                answer, grade = next(grades)
                unit_rows[-1]["k"] += bool(grade.correct)  # stored with its rollouts, in one transaction
                rollout_rows.append({
                    "rollout_id": f"{u.unit_id}:{i}", "unit_id": u.unit_id, "sample_index": i,
                    "solution_id": u.solution.solution_id, "step_index": u.step_index, "text": c.text,
                    "answer": answer, "correct": grade.correct, "grade_status": grade.status,
                    "num_tokens": c.num_tokens, "run_id": self.run_id,
                })
        return unit_rows, rollout_rows

    # --- finished solutions -----------------------------------------------------------------

    def record_labels(self, done: list[tuple[Solution, SolutionState]], filtered: dict[str, str]) -> tuple[int, int, int]:
        """Store finished solutions' inferred labels, contradictions and completion markers, and
        under ``+reuse`` the solutions made from their rollouts. Returns the counts of inferred
        labels, contradictions and newly reused rollouts."""
        labels, contradictions, markers = [], [], []
        common = {"label_key": self.label_key, "strategy": self.config.strategy, "run_id": self.run_id}
        for solution, state in done:
            steps, found = infer_labels(state, self.config.rollouts)
            inferred = [s for s in steps if s.source == "inferred"]
            labels += [self._label_row(solution, s, common) for s in inferred]
            contradictions += [{"solution_id": solution.solution_id, "step_index": c.step_index,
                                "after_step": c.after, **common} for c in found]
            markers.append({
                "solution_id": solution.solution_id, "completer_model": self.completer.identity,
                "params": self.params, "budget": self.config.rollouts,
                "measured_steps": sum(s.source == "measured" for s in steps), "inferred_steps": len(inferred),
                "open_steps": sum(s.source == "open" for s in steps), "contradictions": len(found),
                "filtered": filtered.get(solution.problem["problem_id"]), **common,
            })
        generations, reused_solutions, reused_steps, reused = (
            self.reuse_rows([(s, st) for s, st in done if not s.reused]) if self.reuse else ([], [], [], []))
        def write() -> int:
            with self.store.transaction():
                self.store.insert_rows("step_labels", labels)
                self.store.insert_rows("label_contradictions", contradictions)
                # Reused rollouts are stored with their parent's marker: a finished parent always has them.
                self.store.insert_rows("generations", generations)
                self.store.insert_rows("solutions", reused_solutions)
                self.store.insert_rows("steps", reused_steps)
                new_reused = self.store.insert_rows("reused_rollouts", reused)
                self.store.insert_rows("labelled_solutions", markers)
            return new_reused

        return len(labels), len(contradictions), self.store.retrying(write)

    def reuse_rows(self, done: list[tuple[Solution, SolutionState]]) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
        """``+reuse``: every rollout from these solutions' measured prefixes as a solution of its own
        (the prefix + the rollout, graded as the rollout was): generations, solutions, steps and
        reused_rollouts rows. Identical texts of one problem are one solution."""
        if not done:
            return [], [], [], []
        # Settled prefixes only (no more rounds to come), so every rollout of a prefix is reused
        # together, by whichever finished solution holds it settled first.
        origin = {(s.problem["problem_id"], s.prefix_hash(i)): (s, i) for s, state in done
                  for i, m in state.measured.items() if self.settled(i, m)}
        wanted = pa.table({"problem_id": pa.array([p for p, _ in origin], pa.string()),
                           "prefix_hash": pa.array([h for _, h in origin], pa.string())})
        rows = self.store.query(internal_sql("prefix_rollouts"), {
            "completer": self.completer.identity, "params": self.params, "budget": self.config.rollouts},
            tables={"wanted": wanted}).as_dicts()
        generator = f"rollouts:{self.completer.identity}"
        generations: dict[str, dict] = {}
        solutions: dict[str, dict] = {}
        steps: list[dict] = []
        reused: list[dict] = []
        for r in rows:
            parent, step_index = origin[(r["problem_id"], r["prefix_hash"])]
            if r["strategy"] != self.evaluation_of(step_index) or not r["text"].strip():
                continue
            generation_id = content_key("rollouts", r["unit_id"])
            built = solution_rows(parent.problem, generation_id, generator, parent.prefix(step_index) + r["text"],
                                  r["num_tokens"], GradeResult(bool(r["correct"]), r["grade_status"]), self.run_id,
                                  parent.step_format)
            if built is None or built[0]["solution_id"] in solutions:
                continue
            solution, solution_steps = built
            # The rollout's tokens are counted in `rollouts`; the generation row only gives lineage.
            generations.setdefault(generation_id, {
                "generation_id": generation_id, "problem_id": r["problem_id"], "generator_model": generator,
                "params": r["params"], "n": r["n"], "num_tokens": 0, "run_id": self.run_id})
            solutions[solution["solution_id"]] = solution
            steps += solution_steps
            reused.append({"solution_id": solution["solution_id"], "label_key": self.label_key,
                           "problem_id": r["problem_id"], "rollout_id": r["rollout_id"],
                           "parent_solution_id": parent.solution_id, "parent_step": step_index, "run_id": self.run_id})
        return list(generations.values()), list(solutions.values()), steps, reused

    def _label_row(self, solution: Solution, label: StepLabel, common: dict[str, Any]) -> dict[str, Any]:
        assert label.implied_by is not None
        by_final = label.implied_by == solution.num_steps
        return {
            "solution_id": solution.solution_id, "step_index": label.step_index, "completer_model": self.completer.identity,
            "he": label.he, "implied_by_step": label.implied_by,
            "implied_by_unit": None if by_final else self.unit_id(solution, label.implied_by, 0), **common,
        }


def label_solutions(
    store: Store, problem_ids: list[str], config: LabelConfig, run_id: str, completer: Completer | None = None
) -> LabelSummary:
    """Label these problems' solutions with ``config.strategy``, round after round, until every
    solution's strategy is done; under ``+reuse``, then the solutions made from their rollouts.
    Each batch of units is stored in one transaction; the store is released while the engine and
    the grader work, so other runners and ad hoc queries can use it."""
    labeller = Labeller(store, config, run_id, completer or get_completer(config.completer_settings))
    solutions = labeller.solutions(problem_ids)
    filtered = labeller.filtered(solutions)  # decided by the generator's solutions alone
    tally = _Tally(before=labeller.stored_units(solutions))
    with Grader(workers=config.grader_workers, timeout_s=config.grader_timeout_s) as grader:
        _label_until_done(labeller, solutions, filtered, grader, tally, "labelled solutions")
        if labeller.reuse:
            _label_until_done(labeller, labeller.reused_solutions(problem_ids), filtered, grader, tally,
                              "labelled reused rollouts")
    return LabelSummary(tally.before + len(tally.total), tally.before, tally.labelled, tally.elsewhere, tally.recomputed,
                        tally.rollouts, tally.tokens, tally.engine_seconds, tally.solutions, tally.rounds,
                        tally.inferred, tally.contradictions, tally.reused)


def _label_until_done(labeller: Labeller, solutions: list[Solution], filtered: dict[str, str], grader: Grader,
                      tally: _Tally, description: str) -> None:
    finished = labeller.finished(solutions)
    open_ = {s.solution_id: s for s in solutions if s.solution_id not in finished}
    with progress(description, len(open_)) as advance:
        while open_:
            states = labeller.states(list(open_.values()))
            requests = {sid: labeller.requests(open_[sid], states[sid], filtered) for sid in open_}
            done = [(open_[sid], states[sid]) for sid, wanted in requests.items() if not wanted]
            if done:
                inferred, contradictions, reused = labeller.record_labels(done, filtered)
                tally.solutions += len(done)
                tally.inferred += inferred
                tally.contradictions += contradictions
                tally.reused += reused
                advance(len(done))
                for solution, _ in done:
                    del open_[solution.solution_id]
            units = {u.unit_id: u for u in labeller.units({sid: r for sid, r in requests.items() if r}, open_)}
            if not units:
                continue
            if repeated := [k for k in units if k in tally.total]:
                # A stored unit is replayed as a measurement, so asking for it again means the store
                # disagrees with itself (e.g. rollouts deleted by hand): stop instead of looping.
                unit = units[repeated[0]]
                raise StoreError(
                    f"labelling asked twice for unit {unit.unit_id} (problem {unit.problem['problem_id']}, step "
                    f"{unit.step_index}, round {unit.round}) although it was stored; run `prmf doctor`")
            tally.rounds += 1
            tally.total.update(units)
            stored = labeller.store.existing_keys("work_units", "unit_id", list(units))  # by a concurrent run since
            tally.elsewhere += len(stored)
            _compute_units(labeller.store, labeller, grader, [k for k in units if k not in stored], units, tally)


def _compute_units(store: Store, labeller: Labeller, grader: Grader, pending: list[str], units: dict[str, WorkUnit],
                   tally: _Tally) -> None:
    def elsewhere(count: int) -> None:
        tally.elsewhere += count

    def compute(keys: list[str]):
        return labeller.compute([units[k] for k in keys], grader)

    def commit(keys: list[str], result) -> tuple[int, int]:
        unit_rows, rollout_rows, seconds = result
        inserted = store.insert_rows("work_units", unit_rows)
        checkpoint("label-in-transaction")
        return inserted, store.insert_rows("rollouts", rollout_rows)

    def stored(keys: list[str], result, counts: tuple[int, int]) -> None:
        unit_rows, rollout_rows, seconds = result
        inserted, rollouts = counts
        tally.rollouts += rollouts
        tally.labelled += inserted
        tally.recomputed += len(keys) - inserted
        tally.tokens += sum(r["num_tokens"] for r in rollout_rows)
        tally.engine_seconds += seconds
        checkpoint("label-batch-stored")

    process_claimed(
        store, "label", pending, labeller.run_id, labeller.config.batch_prefixes, labeller.config.lease_s,
        stored=lambda keys: store.existing_keys("work_units", "unit_id", keys),
        compute=compute, commit=commit, on_stored_elsewhere=elsewhere, after_commit=stored,
    )


@task(
    name="label-steps",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    task_run_name="label-{config.dataset.name}-{config.strategy}-n{config.rollouts}",
)
def label_task(problem_ids: list[str], config: LabelConfig, run_id: str) -> LabelSummary:
    # Retrying is safe: stored units are skipped on the next attempt.
    return run_labelling(problem_ids, config, run_id)


def run_labelling(problem_ids: list[str], config: LabelConfig, run_id: str) -> LabelSummary:
    """:func:`label_solutions` with the process's completer and the configured store. The engine
    starts on its first request, with the store released (a start takes tens of seconds and other
    runners need the file); an engine error discards it, so a retry gets a fresh one."""
    with (
        completer_session(config.completer_settings, not_engine_errors=(StoreError,)) as completer,
        Store(config.db) as store,
    ):
        return label_solutions(store, problem_ids, config, run_id, completer)
