-- Verifier-guided beam search (`prmf eval --method beam`) and generated-token cost of every
-- evaluation method, so search and best-of-N can be compared at equal compute.

-- One search configuration: the verifier that ranks beams, the generator and its sampling, the
-- search settings (beam width B, C expansions per beam, ranking reward, final selection).
CREATE TABLE searches (
    search_id       VARCHAR PRIMARY KEY,       -- hash(method, model, generator, params, settings, step format)
    method          VARCHAR NOT NULL,          -- the eval_results method name, parameters included
    model_id        VARCHAR NOT NULL,          -- prm_models.model_id of the verifier
    generator_model VARCHAR NOT NULL,
    params          JSON NOT NULL,             -- sampling (temperature, top_p, seed)
    settings        JSON NOT NULL,             -- BeamSettings with this search's width
    step_format     VARCHAR NOT NULL,
    run_id          VARCHAR,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Every generated step of a search tree: node '0.2' is the third expansion of the root's first
-- beam... (dotted path of expansion indexes). Tokens of every expansion are counted here,
-- whether the step was kept, pruned or empty.
CREATE TABLE search_nodes (
    search_id    VARCHAR NOT NULL REFERENCES searches (search_id),
    problem_id   VARCHAR NOT NULL,
    node_id      VARCHAR NOT NULL,
    parent_id    VARCHAR,                      -- NULL: a child of the bare question
    depth        INTEGER NOT NULL CHECK (depth >= 1),
    text         VARCHAR NOT NULL,             -- the generated continuation, as sampled
    num_tokens   INTEGER NOT NULL,
    finish       VARCHAR NOT NULL,             -- step: ended at the step separator | eos | length | empty
    step_score   DOUBLE,                       -- the verifier's score of the new step (NULL: empty)
    reward       DOUBLE,                       -- the ranking value (Q, or Q + alpha * A)
    outcome      VARCHAR NOT NULL,             -- kept | pruned | completed | duplicate | empty
    run_id       VARCHAR,
    PRIMARY KEY (search_id, problem_id, node_id)
);

-- The answer a search chose per problem, with its cost.
CREATE TABLE search_results (
    search_id     VARCHAR NOT NULL REFERENCES searches (search_id),
    problem_id    VARCHAR NOT NULL,
    node_id       VARCHAR,                     -- the chosen completed node (NULL: none completed)
    text          VARCHAR,
    final_answer  VARCHAR,
    correct       BOOLEAN NOT NULL,
    grade_status  VARCHAR NOT NULL,
    score         DOUBLE,                      -- the chosen node's selection score
    completed     INTEGER NOT NULL,            -- completed candidates the answer was chosen from
    tokens        BIGINT NOT NULL,             -- generated tokens of the whole search for this problem
    run_id        VARCHAR,
    PRIMARY KEY (search_id, problem_id)
);

-- Mean generated tokens per problem behind each accuracy (best-of-N: the N candidates'; beam
-- search: the whole tree's). NULL in rows written before this migration.
ALTER TABLE eval_results ADD COLUMN tokens DOUBLE;
