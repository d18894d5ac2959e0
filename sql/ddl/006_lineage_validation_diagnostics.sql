-- Lineage for every flow, step formats, truncation, validation-based promotion and scorer
-- diagnostics. Stores made before it keep every row; only stale score-cache rows are dropped.

-- Every flow run writes its runs row; a subflow (evaluate inside retrain, label inside factory)
-- names the run that started it.
ALTER TABLE runs ADD COLUMN parent_run_id VARCHAR;

-- How a solution's text was split into steps (line | paragraph | marker); earlier rows were lines.
ALTER TABLE solutions ADD COLUMN step_format VARCHAR DEFAULT 'line';
ALTER TABLE eval_pools ADD COLUMN step_format VARCHAR DEFAULT 'line';

-- A candidate longer than the scorer's context is scored on its final steps (the earlier ones are
-- NULL in step_scores) and marked here.
ALTER TABLE eval_scores ADD COLUMN truncated BOOLEAN DEFAULT false;

-- PRM scores cached before this migration could hold fewer scores than the candidate has steps
-- (later steps cut at the training length), so `last` read the wrong step: drop those cache rows;
-- the next evaluation scores the candidates again.
DELETE FROM eval_scores s
WHERE s.model_id IN (SELECT model_id FROM prm_models WHERE kind = 'prm')
  AND len(s.step_scores) <> (SELECT json_array_length(c.steps) FROM eval_candidates c
                             WHERE c.pool_id = s.pool_id AND c.problem_id = s.problem_id
                               AND c.candidate_index = s.candidate_index);

-- Every promotion decision with its evidence: a paired bootstrap over the validation problems of
-- the candidate's selection accuracy against the incumbent's (or, for a first model, majority vote's).
CREATE TABLE promotion_decisions (
    run_id              VARCHAR NOT NULL,      -- the retrain run that decided
    kind                VARCHAR NOT NULL,      -- prm | orm
    candidate           VARCHAR NOT NULL,      -- the new model
    baseline            VARCHAR NOT NULL,      -- the incumbent model id, or 'majority'
    method              VARCHAR NOT NULL,      -- prm_best_of_n | orm_best_of_n
    aggregation         VARCHAR,               -- PRM step aggregation
    n                   INTEGER NOT NULL,      -- candidates per problem
    problems            INTEGER NOT NULL,      -- validation problems compared
    pool_ids            JSON NOT NULL,         -- the validation pools
    candidate_accuracy  DOUBLE NOT NULL,
    baseline_accuracy   DOUBLE NOT NULL,
    difference          DOUBLE NOT NULL,
    ci_low              DOUBLE NOT NULL,       -- one-sided lower bound at `confidence`
    ci_high             DOUBLE NOT NULL,
    p_better            DOUBLE NOT NULL,       -- fraction of bootstrap resamples with a gain > 0
    confidence          DOUBLE NOT NULL,
    promoted            BOOLEAN NOT NULL,
    reason              VARCHAR NOT NULL,
    created_at          TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- How well each reward model's solution score separates correct from incorrect candidates of a
-- pool (AUC) and how much it follows length (Spearman with steps and tokens), per aggregation.
CREATE TABLE eval_diagnostics (
    run_id           VARCHAR NOT NULL,
    pool_id          VARCHAR NOT NULL,
    dataset          VARCHAR NOT NULL,
    split            VARCHAR NOT NULL,
    model_id         VARCHAR NOT NULL,
    aggregation      VARCHAR,                  -- min | last | prod | mean (PRM); NULL for an ORM
    candidates       INTEGER NOT NULL,
    correct          INTEGER NOT NULL,
    truncated        INTEGER NOT NULL,         -- candidates scored on their final steps only
    auc              DOUBLE,                   -- NULL when every candidate is correct, or none is
    spearman_steps   DOUBLE,                   -- NULL when undefined (constant side)
    spearman_tokens  DOUBLE,
    created_at       TIMESTAMP NOT NULL DEFAULT current_timestamp
);
