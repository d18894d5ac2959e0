-- What each verifier's training data cost (tasks/training/cost.py), so verifiers can be compared
-- by accuracy against tokens spent: the generated tokens of the solutions it trained on, of the
-- rollouts its step labels came from (0 for an ORM or implicit PRM, which need none), and the
-- tokens it was trained on (every epoch). NULL for models trained before this migration: which
-- solutions they saw was not recorded.
ALTER TABLE prm_models ADD COLUMN solution_tokens BIGINT;
ALTER TABLE prm_models ADD COLUMN rollout_tokens BIGINT;
ALTER TABLE prm_models ADD COLUMN training_tokens BIGINT;
