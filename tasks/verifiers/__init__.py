"""Verifiers: one interface (:class:`Verifier`), implementations registered by checkpoint kind."""

from tasks.verifiers.base import (
    VERIFIER_METADATA,
    ScoringSettings,
    SolutionScores,
    Verifier,
    VerifierError,
    load_verifier,
    read_metadata,
    register_verifier,
    score_distinct,
)
from tasks.verifiers.implicit import ImplicitPRM  # noqa: F401  (registers the implicit kind)
from tasks.verifiers.step_tag import StepTagVerifier  # noqa: F401  (registers the prm and orm kinds)

__all__ = ["VERIFIER_METADATA", "ScoringSettings", "SolutionScores", "StepTagVerifier", "Verifier", "VerifierError",
           "load_verifier", "read_metadata", "register_verifier", "score_distinct"]
