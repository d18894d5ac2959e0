-- Settled estimates (issue 18: saved queries under 1 s at 10M rollouts). Computing estimates from
-- the units is O(steps) per query: pooling units per prefix, joining 3M steps to them, a window
-- over every state (3 s at 10M rollouts on 2 cores). Once no run is still writing a problem, its
-- per-step rows cannot change (content tables are insert-only), so `Store.settle()` stores them:
-- the three tables below hold, per settled problem, exactly what the *_live views compute. The
-- views (sql/views) read a problem's settled rows when every run that wrote it is in settled_runs
-- and compute it live otherwise, so a query never sees a stale estimate. `prmf doctor` checks the
-- settled rows against the live views. No constraints: a lake has none, and only settle() writes
-- these tables, one settle at a time (settle_clock).

-- Rows of step_estimates_live (sql/views/10_step_estimates.sql).
CREATE TABLE settled_step_estimates (
    solution_id       VARCHAR,
    step_index        INTEGER,
    problem_id        VARCHAR,
    completer_model   VARCHAR,
    strategy          VARCHAR,
    unit_id           VARCHAR,
    n                 BIGINT,
    k                 BIGINT,
    he                BOOLEAN,
    se                DOUBLE,
    gold              BOOLEAN,
    from_final_answer BOOLEAN,
    source            VARCHAR,
    implied_by_step   INTEGER,
    implied_by_unit   VARCHAR,
    early_stopped     BOOLEAN
);

-- Rows of labelled_estimates_live (sql/views/20_labelled_steps.sql): the pooled HE/SE of every
-- step of a fully labelled solution.
CREATE TABLE settled_labelled_estimates (
    solution_id VARCHAR,
    step_index  INTEGER,
    problem_id  VARCHAR,
    he          BOOLEAN,
    se          DOUBLE,
    inferred    BOOLEAN
);

-- Rows of step_values_live (sql/views/30_step_advantages.sql): each state's value under each
-- completer evaluation and the value of the state before it.
CREATE TABLE settled_step_values (
    solution_id     VARCHAR,
    problem_id      VARCHAR,
    step_index      INTEGER,
    gold            BOOLEAN,
    completer_model VARCHAR,
    params          JSON,
    budget          INTEGER,
    evaluations     BIGINT,
    n               BIGINT,
    c               BIGINT,
    q_source        VARCHAR,
    q               DOUBLE,
    q_before        DOUBLE
);

-- Runs whose rows are all in the settled tables.
CREATE TABLE settled_runs (
    run_id     VARCHAR NOT NULL,
    settled_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- One row, updated by every settle: two settles at once change the same row, so one of them
-- fails to commit and retries after the other (on a lake as on a file).
CREATE TABLE settle_clock (
    tick BIGINT NOT NULL
);
INSERT INTO settle_clock VALUES (0);
