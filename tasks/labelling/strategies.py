"""Labelling strategies: which step prefixes of a solution get rollouts, how many, and when to stop.

A strategy is a pure function of what has been measured so far (:class:`SolutionState`): it
returns the next round of :class:`RolloutRequest` s, or none when the solution is done. Because
it keeps no hidden state, a run that was killed resumes by replaying the stored measurements
and asking again, and gets the same requests an uninterrupted run would have made.

Labels come from one estimator for every strategy (:func:`infer_labels`): a measured prefix is
labelled by its own rollouts (HE = any correct, SE = the fraction, with its actual n); a prefix
without rollouts is *inferred* under the monotone assumption of Math-Shepherd/OmegaPRM:

- a correct rollout from prefix j (or a correct final answer, j = S) proves HE = 1 for every
  prefix i <= j: the steps up to i can still reach the answer;
- a prefix j with no correct rollout implies HE = 0 for every later prefix i >= j: once the
  solution cannot reach the answer, longer prefixes cannot either.

Each inferred label names the measured prefix that implied it. Inferred labels never overwrite
measured ones; where the two rules disagree (a correct rollout after a prefix measured wrong),
the disagreement is a :class:`Contradiction`, and the prefixes it spans stay unlabelled.

Strategies (names for the registry, composable with ``+``):

- ``naive``: N rollouts from every non-final prefix (Math-Shepherd; the baseline).
- ``early_stop``: rollouts in rounds (2, 2, 4, 8, ... up to N); a prefix is done at its first
  correct rollout (HE = 1 is final then; its SE has the smaller n and is flagged early-stopped).
- ``binary_search``: OmegaPRM's search for the first error (Luo et al. 2024, Alg. 1, as in
  openr's ``binary_search_incorrect_step``): a wrong solution's prefixes are bisected between the
  last prefix known to reach the answer (initially the bare question) and the first known not
  to (initially the wrong final answer); each evaluated prefix gets k = N rollouts and counts as
  wrong when none is correct. O(log S) evaluated prefixes instead of S - 1. A correct solution
  needs no rollouts: its final answer proves every prefix. ``binary_search+early_stop`` evaluates
  each bisected prefix with early-stop rounds.
- ``+root`` (with any of the above): N rollouts from the bare question (step 0), the problem's
  solve rate, which process advantages need.
- ``+filter`` (with any of the above): a problem whose M solutions are all correct, or all
  wrong, carries little step-level signal; its step prefixes get no rollouts (root rollouts
  still do). An all-correct problem's steps are then inferred HE = 1 from the final answers; an
  all-wrong problem's stay unlabelled. The labeller records which filter applied.
- ``+reuse`` (with any of the above): tree reuse as in OmegaPRM. When a solution's labelling is
  done, every rollout from its prefixes becomes a solution itself (prefix + rollout, graded as
  the rollout was): a correct one is labelled HE = 1 at every step for free (its own final
  answer proves them), a wrong one is labelled by the same strategy, starting from the
  measurements it shares with its parent (its first i steps are the parent's prefix i; binary
  search bisects only its own steps when prefix i had a correct rollout, and needs nothing when
  it had none: the monotone rule then labels the new steps HE = 0). Only settled prefixes (no
  more rounds to come) are reused. Reuse goes one level deep: rollouts of reused rollouts are
  not reused again.

Under every strategy a correct rollout from prefix i proves HE = 1 for prefix i and every earlier
prefix (the rule above; no assumption needed), and identical (problem, prefix) pairs share
their rollouts, across solutions and across strategies with the same evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

ROOT = 0  # the bare question's "prefix" index


@dataclass(frozen=True)
class Measurement:
    """Rollouts from one prefix, over all rounds so far."""

    n: int
    correct: int
    rounds: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.correct <= self.n:
            raise ValueError(f"correct rollouts ({self.correct}) must lie in 0..n ({self.n})")

    def plus(self, n: int, correct: int) -> "Measurement":
        return Measurement(self.n + n, self.correct + correct, self.rounds + 1)


@dataclass
class SolutionState:
    """One solution's steps (1..num_steps; the last is the final answer) and its measurements,
    keyed by prefix length (0 = the bare question)."""

    num_steps: int
    correct: bool
    measured: dict[int, Measurement] = field(default_factory=dict)
    # A reused rollout (+reuse): the parent prefix it continued, settled before it existed. Its
    # steps up to there are the parent's; a search covers only the later ones.
    reused_from: int = ROOT

    def observe(self, step_index: int, n: int, correct: int) -> None:
        """Add one round of rollouts from prefix ``step_index``."""
        if not ROOT <= step_index < self.num_steps:
            raise ValueError(f"prefix {step_index} is not a non-final prefix of a {self.num_steps}-step solution")
        old = self.measured.get(step_index)
        self.measured[step_index] = Measurement(n, correct) if old is None else old.plus(n, correct)


@dataclass(frozen=True)
class RolloutRequest:
    step_index: int  # prefix length; 0 = the bare question
    n: int
    round: int  # 0 for the prefix's first round: part of the work unit's key


@dataclass(frozen=True)
class StepLabel:
    step_index: int
    he: bool | None  # None: unlabelled (a contradiction, or nothing implies it)
    se: float | None  # measured prefixes only
    n: int  # rollouts behind the label (0 when inferred)
    source: Literal["measured", "inferred", "final", "open"]
    implied_by: int | None = None  # inferred: the prefix whose measurement implies it
    early_stopped: bool = False  # measured with fewer than the budget because a rollout was correct


@dataclass(frozen=True)
class Contradiction:
    """A correct rollout (or correct final answer) at ``step_index`` after prefix ``after`` had
    none: the monotone assumption does not hold for this solution."""

    step_index: int
    after: int


def infer_labels(state: SolutionState, budget: int) -> tuple[list[StepLabel], list[Contradiction]]:
    """Labels of steps 1..num_steps and the contradictions among the measurements (see module doc)."""
    S = state.num_steps
    good = [j for j, m in state.measured.items() if j > ROOT and m.correct > 0] + ([S] if state.correct else [])
    bad = [j for j, m in state.measured.items() if j > ROOT and m.correct == 0 and m.n > 0]
    contradictions = sorted({Contradiction(g, max(b for b in bad if b < g)) for g in good if any(b < g for b in bad)},
                            key=lambda c: (c.step_index, c.after))
    labels = []
    for i in range(1, S + 1):
        if i == S:
            labels.append(StepLabel(i, state.correct, 1.0 if state.correct else 0.0, 1, "final"))
            continue
        m = state.measured.get(i)
        if m is not None and m.n > 0:
            labels.append(StepLabel(i, m.correct > 0, m.correct / m.n, m.n, "measured",
                                    early_stopped=m.correct > 0 and m.n < budget))
            continue
        proof_good = min((j for j in good if j >= i), default=None)
        proof_bad = max((j for j in bad if j <= i), default=None)
        if proof_good is not None and proof_bad is None:
            labels.append(StepLabel(i, True, None, 0, "inferred", proof_good))
        elif proof_bad is not None and proof_good is None:
            labels.append(StepLabel(i, False, None, 0, "inferred", proof_bad))
        else:  # both rules apply (a contradiction spans it) or neither does
            labels.append(StepLabel(i, None, None, 0, "open"))
    return labels, contradictions


class LabelStrategy(Protocol):
    """Decides the next round of rollouts for one solution from its measurements alone."""

    name: str

    def requests(self, state: SolutionState) -> list[RolloutRequest]:
        """The next round (empty: this solution is done)."""
        ...


class PrefixEvaluator(Protocol):
    """How one prefix is evaluated: the next round for it, or None when it is settled."""

    def next_round(self, measured: Measurement | None) -> int | None: ...


@dataclass(frozen=True)
class FullBudget:
    """N rollouts in one round."""

    n: int

    def next_round(self, measured: Measurement | None) -> int | None:
        return self.n if measured is None else None


def early_stop_schedule(n: int, first: int = 2) -> tuple[int, ...]:
    """Round sizes 2, 2, 4, 8, ... (each round doubles the total so far), the last one cut to reach n."""
    sizes, total, size = [], 0, min(first, n)
    while total < n:
        size = min(size, n - total)
        sizes.append(size)
        total += size
        size = total
    return tuple(sizes)


@dataclass(frozen=True)
class EarlyStop:
    """Rounds from :func:`early_stop_schedule` until the first correct rollout or N in all."""

    n: int

    def next_round(self, measured: Measurement | None) -> int | None:
        if measured is None:
            return early_stop_schedule(self.n)[0]
        if measured.correct > 0 or measured.n >= self.n:
            return None
        schedule = early_stop_schedule(self.n)
        left = self.n - measured.n
        return min(schedule[measured.rounds], left) if measured.rounds < len(schedule) else left


def _request(state: SolutionState, step_index: int, evaluator: PrefixEvaluator) -> RolloutRequest | None:
    measured = state.measured.get(step_index)
    n = evaluator.next_round(measured)
    return None if n is None else RolloutRequest(step_index, n, 0 if measured is None else measured.rounds)


@dataclass(frozen=True)
class EveryPrefix:
    """Every non-final prefix, each evaluated by ``evaluator`` (naive, or early stop)."""

    name: str
    evaluator: PrefixEvaluator

    def requests(self, state: SolutionState) -> list[RolloutRequest]:
        wanted = (_request(state, i, self.evaluator) for i in range(1, state.num_steps))
        return [r for r in wanted if r is not None]


@dataclass(frozen=True)
class BinarySearch:
    """OmegaPRM's bisection for the first prefix that cannot reach the answer (module doc).

    The search walks its own path only: measurements another solution made of a shared prefix
    are used when the path reaches that prefix, never to jump ahead, so what a solution asks for
    depends on its rollouts' outcomes alone, not on which solution happened to be labelled
    first (a killed run resumes into exactly the units an uninterrupted run stores). A reused
    rollout (``+reuse``) is searched after its parent prefix (``SolutionState.reused_from``), or
    not at all when that prefix had no correct rollout (its later steps are then inferred HE = 0).
    """

    name: str
    evaluator: PrefixEvaluator

    def requests(self, state: SolutionState) -> list[RolloutRequest]:
        if state.correct:
            return []  # the correct final answer proves every prefix
        lo, hi = state.reused_from, state.num_steps  # lo: assumed or known to reach the answer; hi: known not to
        if lo > ROOT and state.measured[lo].correct == 0:
            return []
        while hi - lo > 1:
            mid = (lo + hi) // 2
            request = _request(state, mid, self.evaluator)
            if request is not None:
                return [request]
            if state.measured[mid].correct > 0:
                lo = mid
            else:
                hi = mid
        return []


@dataclass(frozen=True)
class WithRoot:
    """Another strategy plus N rollouts from the bare question."""

    name: str
    inner: LabelStrategy
    root: PrefixEvaluator

    def requests(self, state: SolutionState) -> list[RolloutRequest]:
        root = _request(state, ROOT, self.root)
        return ([root] if root is not None else []) + self.inner.requests(state)


STRATEGY_NAMES = ("naive", "early_stop", "binary_search", "binary_search+early_stop")
MODIFIERS = ("root", "filter", "reuse")


def parse_strategy(name: str) -> tuple[str, frozenset[str]]:
    """``binary_search+early_stop+root+filter`` -> ("binary_search+early_stop", {"root", "filter"})."""
    parts = name.split("+")
    modifiers = []
    while parts and parts[-1] in MODIFIERS:
        modifiers.append(parts.pop())
    if len(set(modifiers)) < len(modifiers):
        raise ValueError(f"labelling strategy {name!r} repeats a modifier")
    return "+".join(parts), frozenset(modifiers)


def prefix_evaluator(name: str, n: int) -> PrefixEvaluator:
    """How the strategy ``name`` evaluates a solution's prefixes (the bare question, with +root,
    always gets :class:`FullBudget`)."""
    base, _ = parse_strategy(name)
    return EarlyStop(n) if base.endswith("early_stop") else FullBudget(n)


def strategy(name: str, n: int) -> LabelStrategy:
    """The strategy registered under ``name`` (optionally ``+root``, ``+filter``, ``+reuse``) with a
    budget of ``n`` rollouts per prefix. ``+filter`` and ``+reuse`` are applied by the labeller
    (they need every solution of a problem, or the stored rollouts); here they only have to be
    known modifiers."""
    if n < 1:
        raise ValueError(f"the rollout budget must be at least 1, got {n}")
    base, modifiers = parse_strategy(name)
    root = "root" in modifiers
    built: LabelStrategy
    if base in ("naive", "early_stop"):
        built = EveryPrefix(base, prefix_evaluator(base, n))
    elif base in ("binary_search", "binary_search+early_stop"):
        built = BinarySearch(base, prefix_evaluator(base, n))
    else:
        raise ValueError(f"unknown labelling strategy {name!r}; known: {', '.join(STRATEGY_NAMES)} "
                         "(each may end in any of +root, +filter, +reuse)")
    return WithRoot(name, built, FullBudget(n)) if root else built

