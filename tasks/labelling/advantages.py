"""Process advantages ("Rewarding Progress", Setlur et al. 2024): a step's reward is its progress,
the change in the probability of reaching a correct answer, measured under a *prover* policy mu.

For a solution with steps 1..S, Q(h) is the value of the prefix of h steps: Q(0) the bare
question's (root rollouts, ``+root``), Q(1..S-1) the rollouts' success rate from each prefix, and
Q(S) the solution's own outcome (1 correct, 0 wrong: the terminal state's value). Then

    A_mu(h) = Q_mu(h) - Q_mu(h - 1)                 (deterministic transitions)
    reward(h) = Q_pi(h) + alpha * A_mu(h)           (the effective reward for search and RL)

and a Best-of-K prover of the base policy is analytic: Q_BoK = 1 - (1 - Q_pi)^K.

These functions are the reference the SQL (``step_advantages`` in ``sql/views``) is tested
against; the store computes the same from its rollouts.
"""

from __future__ import annotations

from collections.abc import Sequence


def best_of_k(q: float, k: int) -> float:
    """The value under Best-of-K of a policy whose value is ``q``: at least one of K independent
    tries succeeds."""
    if k < 1:
        raise ValueError(f"Best-of-K needs K >= 1, got {k}")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a value is a probability, got {q}")
    return 1.0 - (1.0 - q) ** k


def advantages(values: Sequence[float | None]) -> list[float | None]:
    """A(h) = Q(h) - Q(h-1) for h = 1..S, from the values Q(0..S); None where either is unknown."""
    return [None if now is None or before is None else now - before for before, now in zip(values, values[1:])]


def effective_rewards(q_pi: Sequence[float | None], a_mu: Sequence[float | None], alpha: float) -> list[float | None]:
    """Q_pi(h) + alpha * A_mu(h) per step; None where either is unknown."""
    return [None if q is None or a is None else q + alpha * a for q, a in zip(q_pi, a_mu)]


def squash_reward(reward: float, alpha: float) -> float:
    """The effective reward as a training target in [0, 1]: ``(reward + alpha) / (1 + 2 alpha)``.

    Q_pi is in [0, 1] and A_mu in [-1, 1], so the reward lies in [-alpha, 1 + alpha] and this affine
    map is exact and invertible (:func:`unsquash_score`); the clip only absorbs rounding."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    return min(1.0, max(0.0, (reward + alpha) / (1.0 + 2.0 * alpha)))


def unsquash_score(score: float, alpha: float) -> float:
    """A PAV verifier's score (a probability) read back as an effective reward:
    ``score * (1 + 2 alpha) - alpha``, the inverse of :func:`squash_reward`."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    return score * (1.0 + 2.0 * alpha) - alpha
