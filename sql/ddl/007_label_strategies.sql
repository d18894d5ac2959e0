-- Labelling strategies (tasks/labelling/strategies.py): rollouts in rounds, root rollouts,
-- inferred labels and the contradictions the monotone assumption meets. Stores made before it
-- keep every row: their units are round 0 of the full-budget ('math_shepherd') evaluator.

-- A unit is now one *round* of rollouts from a prefix: early stopping adds rounds until a
-- rollout is correct, and the key must tell them apart. DuckDB cannot alter a UNIQUE
-- constraint, so work_units (and rollouts, which references it) are rebuilt with their rows.
CREATE TEMP TABLE work_units_v6 AS SELECT * FROM work_units;
CREATE TEMP TABLE rollouts_v6 AS SELECT * FROM rollouts;
DROP TABLE rollouts;
DROP TABLE work_units;

CREATE TABLE work_units (
    unit_id         VARCHAR PRIMARY KEY,       -- hash(problem, prefix, completer, params, strategy, budget[, round])
    problem_id      VARCHAR NOT NULL REFERENCES problems (problem_id),
    prefix_hash     VARCHAR NOT NULL,          -- the bare question's for root units (step 0)
    completer_model VARCHAR NOT NULL,
    params          JSON NOT NULL,
    strategy        VARCHAR NOT NULL,          -- how the prefix is evaluated: math_shepherd (N at once) | early_stop (rounds)
    budget          INTEGER NOT NULL CHECK (budget >= 1),   -- N: the most rollouts the prefix may get
    solution_id     VARCHAR NOT NULL,          -- the solution/step that first asked for it
    step_index      INTEGER NOT NULL CHECK (step_index >= 0),  -- 0: the bare question (root)
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
    round           INTEGER NOT NULL DEFAULT 0 CHECK (round >= 0),
    n               INTEGER NOT NULL CHECK (n >= 1),        -- rollouts in this round
    UNIQUE (problem_id, prefix_hash, completer_model, params, strategy, budget, round)
);

CREATE TABLE rollouts (
    rollout_id    VARCHAR PRIMARY KEY,         -- unit_id:sample_index
    unit_id       VARCHAR NOT NULL REFERENCES work_units (unit_id),
    sample_index  INTEGER NOT NULL CHECK (sample_index >= 0),
    solution_id   VARCHAR NOT NULL,
    step_index    INTEGER NOT NULL,
    text          VARCHAR NOT NULL,
    answer        VARCHAR,
    correct       BOOLEAN NOT NULL,
    grade_status  VARCHAR NOT NULL,
    num_tokens    INTEGER NOT NULL,
    run_id        VARCHAR NOT NULL,
    created_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
    UNIQUE (unit_id, sample_index)
);

INSERT INTO work_units BY NAME SELECT *, 0 AS round, budget AS n FROM work_units_v6;
INSERT INTO rollouts BY NAME SELECT * FROM rollouts_v6;
DROP TABLE work_units_v6;
DROP TABLE rollouts_v6;
CREATE INDEX work_units_prefix ON work_units (problem_id, prefix_hash);
CREATE INDEX rollouts_unit ON rollouts (unit_id);

-- A solution whose labelling under one label key (completer, rollout sampling, strategy, budget)
-- is finished: its strategy asks for no more rollouts. The data cursor reads it.
CREATE TABLE labelled_solutions (
    solution_id     VARCHAR NOT NULL,
    label_key       VARCHAR NOT NULL,          -- hash(completer, params, strategy, budget)
    strategy        VARCHAR NOT NULL,          -- the strategy's registry name, e.g. binary_search+early_stop
    completer_model VARCHAR NOT NULL,
    params          JSON NOT NULL,
    budget          INTEGER NOT NULL,
    measured_steps  INTEGER NOT NULL,          -- non-final prefixes with rollouts
    inferred_steps  INTEGER NOT NULL,
    open_steps      INTEGER NOT NULL,          -- unlabelled (a contradiction spans them)
    contradictions  INTEGER NOT NULL,
    filtered        VARCHAR,                   -- +filter skipped its prefixes: all_correct | all_wrong (its problem's M solutions)
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (solution_id, label_key)
);

-- Labels a strategy inferred without rollouts from that prefix (measured labels are derived from
-- the rollouts themselves in step_estimates; they are never stored twice).
CREATE TABLE step_labels (
    solution_id     VARCHAR NOT NULL,
    step_index      INTEGER NOT NULL,
    label_key       VARCHAR NOT NULL,
    strategy        VARCHAR NOT NULL,
    completer_model VARCHAR NOT NULL,
    he              BOOLEAN NOT NULL,
    implied_by_step INTEGER NOT NULL,          -- the prefix whose measurement implies it (num_steps: the final answer)
    implied_by_unit VARCHAR,                   -- that prefix's first-round unit; NULL when the final answer implies it
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (solution_id, step_index, label_key)
);

-- Where the monotone assumption failed: a correct rollout (or final answer) at step_index after
-- prefix after_step had no correct rollout. The steps between stay unlabelled.
CREATE TABLE label_contradictions (
    solution_id VARCHAR NOT NULL,
    label_key   VARCHAR NOT NULL,
    strategy    VARCHAR NOT NULL,
    step_index  INTEGER NOT NULL,
    after_step  INTEGER NOT NULL,
    run_id      VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (solution_id, label_key, step_index, after_step)
);

-- Which labelling strategy a run used (also inside its config JSON).
ALTER TABLE runs ADD COLUMN label_strategy VARCHAR;
