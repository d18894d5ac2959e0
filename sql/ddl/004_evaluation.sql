-- Best-of-N evaluation: candidate pools sampled once and reused, so every reward-model version is
-- compared on identical candidates; the scores each model gave them; the accuracies it reached.

-- A pool: N_max candidates per problem from one generator + sampling setting. Problems are added
-- to a pool as evaluations ask for them (a larger --limit extends the same pool).
CREATE TABLE eval_pools (
    pool_id         VARCHAR PRIMARY KEY,       -- hash(dataset, split, generator, params, n_max) or hash(file bytes)
    dataset         VARCHAR NOT NULL,
    split           VARCHAR NOT NULL,
    source          VARCHAR NOT NULL,          -- 'generated' or the external pool file's path
    generator_model VARCHAR,                   -- NULL for external pools
    params          JSON,
    n_max           INTEGER NOT NULL CHECK (n_max >= 1),
    run_id          VARCHAR,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE eval_candidates (
    pool_id         VARCHAR NOT NULL REFERENCES eval_pools (pool_id),
    problem_id      VARCHAR NOT NULL,          -- problems.problem_id (generated) or hash(question, gold) (external)
    candidate_index INTEGER NOT NULL CHECK (candidate_index >= 0),
    question        VARCHAR NOT NULL,
    gold_answer     VARCHAR NOT NULL,
    text            VARCHAR NOT NULL,
    steps           JSON NOT NULL,             -- the text split into steps, as the reward models see it
    final_answer    VARCHAR,
    correct         BOOLEAN NOT NULL,
    grade_status    VARCHAR NOT NULL,          -- ok | no_answer | timeout | error | given (external 'correct')
    num_tokens      INTEGER NOT NULL,
    run_id          VARCHAR,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (pool_id, problem_id, candidate_index)
);

-- Per-step scores a reward model gave a candidate (an ORM: one score). Computed once per model.
CREATE TABLE eval_scores (
    model_id        VARCHAR NOT NULL,          -- prm_models.model_id, or 'file' for scores given in a pool file
    pool_id         VARCHAR NOT NULL,
    problem_id      VARCHAR NOT NULL,
    candidate_index INTEGER NOT NULL,
    step_scores     DOUBLE[] NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (model_id, pool_id, problem_id, candidate_index)
);

-- One row per (evaluation run, method, aggregation, N). model_id is the reward model the method
-- used (NULL for pass@1 and majority, which use none).
CREATE TABLE eval_results (
    run_id          VARCHAR NOT NULL,
    pool_id         VARCHAR NOT NULL REFERENCES eval_pools (pool_id),
    dataset         VARCHAR NOT NULL,
    model_id        VARCHAR,
    method          VARCHAR NOT NULL,          -- pass@1 | majority | orm_best_of_n | prm_best_of_n | prm_weighted_vote
    aggregation     VARCHAR,                   -- min | last | prod | mean (PRM methods)
    n               INTEGER NOT NULL,
    accuracy        DOUBLE NOT NULL,
    problems        INTEGER NOT NULL,
    ci_low          DOUBLE NOT NULL,           -- 95% percentile bootstrap over problems
    ci_high         DOUBLE NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- ProcessBench: earliest-error prediction by thresholding step scores.
CREATE TABLE processbench_results (
    run_id           VARCHAR NOT NULL,
    model_id         VARCHAR NOT NULL,
    split            VARCHAR NOT NULL,         -- gsm8k | math
    samples          INTEGER NOT NULL,
    threshold        DOUBLE NOT NULL,
    threshold_source VARCHAR NOT NULL,         -- the split the threshold was chosen on (gsm8k) or 'given'
    error_accuracy   DOUBLE NOT NULL,
    correct_accuracy DOUBLE NOT NULL,
    f1               DOUBLE NOT NULL,
    created_at       TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE INDEX eval_results_model ON eval_results (model_id, dataset);
