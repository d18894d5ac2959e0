"""What a verifier's training data cost, recorded with it in ``prm_models`` (migration 011).

Three numbers, so verifiers can be compared by accuracy against what they took to make:

- ``solution_tokens``: generated tokens of the generator requests its solutions came from
  (training and validation solutions; every sample of each request);
- ``rollout_tokens``: generated tokens of the rollouts its step labels came from: every rollout
  from a step prefix of those solutions (and, for PAV, from their bare questions); 0 for an ORM
  and an implicit PRM, which learn from the solutions' correctness alone, and for the oracle PRM
  (target gold), whose labels are arith's exact ones;
- ``training_tokens``: tokens of the sequences it was trained on, counted once per epoch (forward
  and backward; a DPO pair counts both solutions).

``sql/internal/training_data_cost.sql`` says exactly what is counted. Generated and trained tokens
do not cost the same per token (decoding is sequential); they are kept apart so a reader can weigh
them, and summed as ``total_tokens`` for the one-axis comparison.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tasks.store import Store, internal_sql


@dataclass(frozen=True)
class TrainingCost:
    solution_tokens: int
    rollout_tokens: int
    training_tokens: int

    @property
    def generated_tokens(self) -> int:
        return self.solution_tokens + self.rollout_tokens

    @property
    def total_tokens(self) -> int:
        return self.generated_tokens + self.training_tokens

    def columns(self) -> dict[str, int]:
        """The ``prm_models`` columns."""
        return {"solution_tokens": self.solution_tokens, "rollout_tokens": self.rollout_tokens,
                "training_tokens": self.training_tokens}


def labels_need_rollouts(kind: str, target: str) -> bool:
    """Step-tag PRMs learn from rollout estimates; ORMs and implicit PRMs from correctness only,
    the oracle PRM (target gold) from gold step labels that cost nothing here."""
    return kind == "prm" and target != "gold"


def training_cost(store: Store, solution_ids: Iterable[str | None], kind: str, target: str,
                  training_tokens: int) -> TrainingCost:
    """The cost of a verifier of ``kind``/``target`` trained on ``solution_ids`` for
    ``training_tokens`` tokens."""
    ids = sorted({s for s in solution_ids if s is not None})
    with_rollouts = labels_need_rollouts(kind, target)
    solution_tokens, rollout_tokens = store.query(internal_sql("training_data_cost"), {
        "solution_ids": ids, "with_rollouts": with_rollouts, "with_root": with_rollouts and target == "pav"}).rows[0]
    return TrainingCost(int(solution_tokens), int(rollout_tokens), int(training_tokens))
