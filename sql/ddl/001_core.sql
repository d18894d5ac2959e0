-- Core schema of the step-labelling store. Applied once, recorded in schema_migrations.
-- Content-addressed keys (sha256 prefixes computed in tasks/store.py) make every unit of work
-- identifiable; primary keys make storing the same unit twice impossible.

CREATE TABLE problems (
    problem_id   VARCHAR PRIMARY KEY,          -- hash(dataset, split, question, gold_answer)
    dataset      VARCHAR NOT NULL,
    split        VARCHAR NOT NULL,
    source       VARCHAR NOT NULL,             -- file path, hf:name or arith:seed=S
    source_row   INTEGER NOT NULL,             -- 1-based line / row in the source
    question     VARCHAR NOT NULL,
    gold_answer  VARCHAR NOT NULL,
    answer_kind  VARCHAR NOT NULL CHECK (answer_kind IN ('numeric', 'math')),
    meta         JSON,                         -- arith: gold_values, given_numbers, operations
    ingested_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Rows that could not be ingested, with where and why. Re-ingesting the same file adds nothing.
CREATE TABLE quarantine (
    source       VARCHAR NOT NULL,
    line         INTEGER NOT NULL,
    reason       VARCHAR NOT NULL,
    raw          VARCHAR,
    run_id       VARCHAR,
    created_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (source, line)
);

-- Lineage: one row per flow run. run_id is the Prefect flow run id.
CREATE TABLE runs (
    run_id            VARCHAR PRIMARY KEY,
    flow_name         VARCHAR NOT NULL,
    flow_run_name     VARCHAR,
    dataset           VARCHAR,
    split             VARCHAR,
    generator_model   VARCHAR,
    completer_model   VARCHAR,
    backend           VARCHAR,
    generation_params JSON,
    rollout_params    JSON,
    config            JSON,                    -- the whole LabelConfig
    code_version      VARCHAR,
    host              VARCHAR,                 -- where the run's process lives, so a later run
    pid               INTEGER,                 -- can tell a crashed run from a live one
    started_at        TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at       TIMESTAMP,
    status            VARCHAR NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'crashed')),
    tokens_generated  BIGINT NOT NULL DEFAULT 0,
    error             VARCHAR
);

-- One generator request: n solutions for one problem under one generator + sampling setting.
CREATE TABLE generations (
    generation_id   VARCHAR PRIMARY KEY,       -- hash(problem, generator, params, n)
    problem_id      VARCHAR NOT NULL REFERENCES problems (problem_id),
    generator_model VARCHAR NOT NULL,
    params          JSON NOT NULL,
    n               INTEGER NOT NULL CHECK (n >= 1),
    num_tokens      BIGINT NOT NULL,
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Distinct sampled solutions (identical texts of one problem and generator are stored once).
CREATE TABLE solutions (
    solution_id     VARCHAR PRIMARY KEY,       -- hash(problem, generator, text)
    problem_id      VARCHAR NOT NULL REFERENCES problems (problem_id),
    generation_id   VARCHAR NOT NULL REFERENCES generations (generation_id),
    generator_model VARCHAR NOT NULL,
    text            VARCHAR NOT NULL,
    final_answer    VARCHAR,
    correct         BOOLEAN NOT NULL,
    grade_status    VARCHAR NOT NULL,          -- ok | no_answer | timeout | error
    num_tokens      INTEGER NOT NULL,
    num_steps       INTEGER NOT NULL CHECK (num_steps >= 1),
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE steps (
    solution_id  VARCHAR NOT NULL REFERENCES solutions (solution_id),
    step_index   INTEGER NOT NULL CHECK (step_index >= 1),   -- 1-based
    text         VARCHAR NOT NULL,
    prefix_hash  VARCHAR NOT NULL,             -- hash of the solution text through this step
    gold         BOOLEAN,                      -- gold prefix label (arith); NULL where unknown
    PRIMARY KEY (solution_id, step_index)
);

-- One unit of completer work: N rollouts from one prefix of one problem under one completer,
-- sampling setting, strategy and budget. Shared by every solution with the same prefix.
CREATE TABLE work_units (
    unit_id         VARCHAR PRIMARY KEY,       -- hash(problem, prefix, completer, params, strategy, budget)
    problem_id      VARCHAR NOT NULL REFERENCES problems (problem_id),
    prefix_hash     VARCHAR NOT NULL,
    completer_model VARCHAR NOT NULL,
    params          JSON NOT NULL,
    strategy        VARCHAR NOT NULL,          -- math_shepherd
    budget          INTEGER NOT NULL CHECK (budget >= 1),
    solution_id     VARCHAR NOT NULL,          -- the solution/step that first asked for it
    step_index      INTEGER NOT NULL,
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
    UNIQUE (problem_id, prefix_hash, completer_model, params, strategy, budget)
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

CREATE INDEX solutions_problem ON solutions (problem_id);
CREATE INDEX work_units_prefix ON work_units (problem_id, prefix_hash);
CREATE INDEX rollouts_unit ON rollouts (unit_id);
