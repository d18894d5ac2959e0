"""Verifier-guided beam search over solution steps.

The search ("Rewarding Progress", Setlur et al. 2024; huggingface/search-and-learn): every open
beam is a partial solution. Each round samples ``C`` next steps from every open beam (generation
stops at the step separator), scores the candidates with a verifier, and keeps the ``B`` best
unfinished ones by the ranking reward. A candidate that finished (its step holds a final answer,
or the text ended without a separator, or ran out of tokens) leaves the beam for the completed
list. After ``max_steps`` rounds the beams still open are finished by one unconstrained sample.
The answer is the completed candidate with the highest aggregated verifier score.

Ranking reward of a candidate's new step h, from the verifier's step scores Q(1..h):
  ``q``:   Q(h);
  ``pav``: Q(h) + alpha * (Q_BoK(h) - Q_BoK(h-1)), Q_BoK = 1 - (1 - Q)^K, the advantage under
           Best-of-K of the base policy computed from the verifier's Q (the paper's prover). At
           depth 1 every candidate shares the bare question, so Q_BoK(0) is any constant (0 here):
           it does not change their order;
  a verifier trained on the effective reward (``prmf train --target pav``) is read as that
  reward (its score un-squashed), whatever ``reward`` says.

An implicit PRM scores through its read-out (``EvalConfig.implicit_readout``; the runner hands
over a :class:`tasks.verifiers.implicit.ReadoutView`), and Q(h) is that read-out at step h:
r_h (``step``), q_h (``cumulative``) or sigmoid(q_h) (``sigmoid``). ``q`` ranks by it as it is
(``cumulative`` and ``sigmoid`` give the same order: sigmoid is monotone). ``pav`` needs Q in
[0, 1] (Best-of-K reads it as a probability), so it is refused unless the read-out is
``sigmoid`` (:func:`check_ranking`). ``select`` aggregates the same read-out.

Every sampled step is a :class:`Node`; its tokens count toward the search's cost whether it was
kept, pruned, a duplicate of a sibling, empty, or completed. Pure apart from the completer and
verifier it is given: storing and grading happen in :mod:`tasks.search.runner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tasks.completers import Completer, complete_adaptive, request_seeds
from tasks.config import BeamSettings, SamplingSettings
from tasks.evaluation import aggregate
from tasks.grading import extract_answer
from tasks.labelling.advantages import best_of_k, unsquash_score
from tasks.steps import SEPARATORS, StepFormat, prefix_text, split_steps
from tasks.store import content_key
from tasks.verifiers import Verifier


@dataclass
class Node:
    """One sampled step. ``steps``: the whole partial solution through it. ``finish``: ``step``
    (ended at the separator), ``eos``, ``length`` or ``empty`` (no new step). ``outcome``:
    ``kept``, ``pruned``, ``completed``, ``duplicate`` (same steps as a sibling candidate) or
    ``empty``. ``solution``: the partial solution's text through this step."""

    node_id: str
    parent_id: str | None
    depth: int
    steps: tuple[str, ...]
    solution: str
    text: str
    num_tokens: int
    finish: str
    step_scores: tuple[float | None, ...] = ()
    reward: float | None = None
    outcome: str = "pruned"


@dataclass(frozen=True)
class SearchProblem:
    problem_id: str
    question: str
    messages: list[dict[str, str]]  # the generator's chat prompt for the question


@dataclass
class SearchOutcome:
    """One problem's search: every node, the chosen completed one (None: nothing completed) and
    its selection score, and the generated tokens of the whole tree."""

    problem_id: str
    nodes: list[Node]
    chosen: Node | None
    score: float | None
    completed: int

    @property
    def tokens(self) -> int:
        return sum(n.num_tokens for n in self.nodes)


def check_ranking(settings: BeamSettings, kind: str | None, readout: str | None) -> None:
    """Raise ValueError when the ranking reward cannot read the verifier's scores: ``pav`` with an
    implicit PRM read out as anything but ``sigmoid`` (its Q would not be in [0, 1])."""
    if kind == "implicit" and settings.reward == "pav" and readout != "sigmoid":
        raise ValueError(f"beam search ranks by pav (Q + alpha * A under Best-of-K), which needs Q in [0, 1]; an "
                         f"implicit PRM read out as {readout!r} is not: use --implicit-readout sigmoid, or --reward q")


def ranking_reward(step_scores: Sequence[float | None], settings: BeamSettings, verifier_meta: dict[str, Any]) -> float:
    """The value a candidate is ranked by (see the module docstring)."""
    check_ranking(settings, verifier_meta.get("kind"), verifier_meta.get("readout"))
    q = step_scores[-1]
    if q is None:
        raise ValueError("the new step has no verifier score")
    if verifier_meta.get("target") == "pav":
        return unsquash_score(q, float(verifier_meta["alpha"]))
    if settings.reward == "q":
        return q
    before = step_scores[-2] if len(step_scores) > 1 and step_scores[-2] is not None else 0.0
    return q + settings.alpha * (best_of_k(q, settings.prover_k) - best_of_k(before, settings.prover_k))


def step_sampling(sampling: SamplingSettings, settings: BeamSettings, step_format: StepFormat) -> SamplingSettings:
    """One step: the pool's temperature and seed, stopping at the step separator."""
    return sampling.model_copy(update={"max_tokens": settings.step_max_tokens, "stop": (SEPARATORS[step_format],),
                                       "repetition_stop": None})


def tail_sampling(sampling: SamplingSettings) -> SamplingSettings:
    """Finishing an open beam: to the end of the text, within the pool's token budget."""
    return sampling.model_copy(update={"stop": (), "repetition_stop": None})


def beam_search(
    problems: Sequence[SearchProblem], completer: Completer, verifier: Verifier, settings: BeamSettings, width: int,
    sampling: SamplingSettings, step_format: StepFormat, seed_key: str,
) -> list[SearchOutcome]:
    """Beam width ``width`` search on each problem, all problems' beams batched into one engine
    call per round. ``seed_key`` (the search's identity) seeds every request, so a search run
    again samples the same tree."""
    separator = SEPARATORS[step_format]
    root = Node("", None, 0, (), "", "", 0, "step")
    active = {p.problem_id: [root] for p in problems}
    nodes: dict[str, list[Node]] = {p.problem_id: [] for p in problems}
    completed: dict[str, list[Node]] = {p.problem_id: [] for p in problems}
    by_id = {p.problem_id: p for p in problems}

    def expand(depth: int, per_beam: int, params: SamplingSettings) -> dict[str, list[Node]]:
        beams = [(pid, beam) for pid, open_beams in active.items() for beam in open_beams]
        if not beams:
            return {}
        prefixes = [prefix_text(list(beam.steps), len(beam.steps), step_format) if beam.steps else ""
                    for _, beam in beams]
        prompts = [completer.chat_prompt(by_id[pid].messages, prefix) for (pid, _), prefix in zip(beams, prefixes)]
        seeds = request_seeds(params, [content_key(seed_key, pid, prefix, depth) for (pid, _), prefix
                                       in zip(beams, prefixes)])
        outputs = complete_adaptive(completer, prompts, per_beam, params, seeds)
        children: dict[str, list[Node]] = {}
        for (pid, beam), prefix, group in zip(beams, prefixes, outputs):
            for j, c in enumerate(group):
                steps = tuple(split_steps(prefix + c.text, step_format))
                finish = ("empty" if len(steps) <= len(beam.steps) else
                          "step" if c.stop_reason == separator else
                          "length" if c.finish_reason == "length" else "eos")
                node = Node(f"{beam.node_id}.{j}" if beam.node_id else str(j), beam.node_id or None, depth,
                            steps, prefix + c.text, c.text, c.num_tokens, finish)
                nodes[pid].append(node)
                children.setdefault(pid, []).append(node)
        return children

    def score(children: dict[str, list[Node]]) -> None:
        """Scores the non-empty, non-duplicate candidates in one verifier call."""
        todo: list[tuple[str, Node]] = []
        for pid, group in children.items():
            seen: set[tuple[str, ...]] = set()
            for node in group:
                if node.finish == "empty":
                    node.outcome = "empty"
                elif node.steps in seen:
                    node.outcome = "duplicate"
                else:
                    seen.add(node.steps)
                    todo.append((pid, node))
        scores = verifier.score_many([(by_id[pid].question, list(node.steps)) for pid, node in todo])
        for (_, node), s in zip(todo, scores):
            node.step_scores = s.step_scores
            node.reward = ranking_reward(s.step_scores, settings, verifier.meta)

    for depth in range(1, settings.max_steps + 1):
        children = expand(depth, settings.expansions, step_sampling(sampling, settings, step_format))
        if not children:
            break
        score(children)
        for pid in active:
            candidates = [n for n in children.get(pid, []) if n.reward is not None]
            open_ones = []
            for node in candidates:
                if node.finish != "step" or extract_answer(node.text) is not None:
                    node.outcome = "completed"
                    completed[pid].append(node)
                else:
                    open_ones.append(node)
            open_ones.sort(key=lambda n: -n.reward)  # stable: ties keep sampling order
            for node in open_ones[width:]:
                node.outcome = "pruned"
            for node in open_ones[:width]:
                node.outcome = "kept"
            active[pid] = open_ones[:width]
    tails = expand(settings.max_steps + 1, 1, tail_sampling(sampling))
    score(tails)
    for pid, group in tails.items():
        for node in group:
            if node.reward is not None:
                node.outcome = "completed"
                completed[pid].append(node)

    outcomes = []
    for p in problems:
        done = completed[p.problem_id]
        chosen, best = None, None
        for node in done:
            value = aggregate(node.step_scores, settings.select)
            if best is None or value > best:
                chosen, best = node, value
        outcomes.append(SearchOutcome(p.problem_id, nodes[p.problem_id], chosen, best, len(done)))
    return outcomes
