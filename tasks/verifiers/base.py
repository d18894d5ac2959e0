"""The verifier interface: a model that scores each step of a solution.

Every verifier the factory trains or loads (the step-tag PRM and ORM today; PAV and implicit-PRM
verifiers next) is a :class:`Verifier`: it scores (question, steps) pairs and says what it was
trained on. Evaluation, ProcessBench, ``prmf score`` and the benchmarks only see this interface;
:func:`load_verifier` reads a checkpoint's ``prm.json`` and builds the implementation registered
for its ``kind``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

VERIFIER_METADATA = "prm.json"

Item = tuple[str, Sequence[str]]  # (question, steps)


class VerifierError(RuntimeError):
    """A verifier cannot be loaded or cannot score (not a verifier checkpoint, no room for a step)."""


@dataclass(frozen=True)
class SolutionScores:
    """A verifier's scores of one solution.

    ``step_scores`` has one entry per step (an outcome verifier: one entry, the solution's
    score); ``None`` marks a leading step dropped because the solution did not fit in the scoring
    context. The final step is always scored. ``truncated``: steps were dropped or the final step
    was cut.
    """

    step_scores: tuple[float | None, ...]
    truncated: bool = False

    @property
    def scored(self) -> tuple[float, ...]:
        """The real scores, in step order (the None entries left out)."""
        return tuple(s for s in self.step_scores if s is not None)

    @property
    def last(self) -> float | None:
        """The final step's score (an outcome verifier: the solution's); None only without steps."""
        return self.step_scores[-1] if self.step_scores else None


@runtime_checkable
class Verifier(Protocol):
    """Scores solutions step by step.

    ``kind``: the registered implementation (``prm``, ``orm``, ...). ``meta``: what the
    checkpoint says it was trained on (target, base model, step format, ...). ``max_length``:
    the tokens it reads per solution; a longer solution is scored on its final steps.
    """

    kind: str
    path: Path
    meta: dict[str, Any]
    max_length: int

    def score_many(self, items: Sequence[Item], advance: Callable[[int], None] | None = None) -> list[SolutionScores]:
        """Scores of each (question, steps) pair, in input order; ``advance(k)`` after k are done."""
        ...


@dataclass(frozen=True)
class ScoringSettings:
    """How a verifier batches its work: at most ``batch_size`` solutions and ``batch_tokens``
    padded tokens per forward pass; ``length_sorted``: solutions are grouped by length, so padding
    stays small (off: input order, the benchmark's baseline). ``dtype``: the weights' dtype
    (None: bfloat16 on a GPU, float32 on a CPU)."""

    batch_size: int = 64
    batch_tokens: int = 16384
    length_sorted: bool = True
    max_length: int | None = None
    device: str | None = None
    dtype: str | None = None


def score_distinct(verifier: Verifier, items: Sequence[Item],
                   advance: Callable[[int], None] | None = None) -> list[SolutionScores]:
    """``verifier.score_many(items)``, each distinct (question, steps) scored once.

    A pool sampled from a small model repeats itself: 16 arith candidates per problem held 7.6
    distinct solutions on average (304 of 640), so scoring each once halves evaluation.
    ``advance`` counts distinct items.
    """
    first: dict[tuple[str, tuple[str, ...]], int] = {}
    slots = [first.setdefault((question, tuple(steps)), len(first)) for question, steps in items]
    distinct = [(question, list(steps)) for question, steps in first]
    scores = verifier.score_many(distinct, advance) if distinct else []
    return [scores[slot] for slot in slots]


_LOADERS: dict[str, Callable[[Path, dict[str, Any], ScoringSettings], Verifier]] = {}


def register_verifier(*kinds: str):
    """Class decorator: ``cls(path, meta, settings)`` loads checkpoints of these kinds."""

    def wrap(cls):
        for kind in kinds:
            _LOADERS[kind] = cls
        return cls

    return wrap


def read_metadata(path: Path | str) -> dict[str, Any]:
    meta_path = Path(path) / VERIFIER_METADATA
    if not meta_path.is_file():
        raise VerifierError(f"{path}: not a prm-factory verifier (no {VERIFIER_METADATA})")
    try:
        return json.loads(meta_path.read_text())
    except ValueError as exc:
        raise VerifierError(f"{meta_path}: not valid JSON ({exc})") from exc


def load_verifier(path: Path | str, settings: ScoringSettings | None = None) -> Verifier:
    """The verifier saved in ``path``, built by the implementation registered for its kind."""
    meta = read_metadata(path)
    kind = meta.get("kind")
    if kind not in _LOADERS:
        raise VerifierError(f"{path}: verifier kind {kind!r} is not known here; known: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[kind](Path(path), meta, settings or ScoringSettings())
