-- +reuse (tree reuse, as in OmegaPRM): rollouts that became solutions of their own. The solution
-- (problems' `solutions` table, generator_model 'rollouts:<completer>') is the rollout's prefix
-- plus the rollout, graded as the rollout was; its first steps are the parent's prefix (same
-- prefix hashes), so it shares that prefix's rollouts. One row per labelling (label_key) that reused it, written in the transaction
-- that finished the parent, so a reused rollout is never lost by a crash.
CREATE TABLE reused_rollouts (
    solution_id        VARCHAR NOT NULL,
    label_key          VARCHAR NOT NULL,
    problem_id         VARCHAR NOT NULL,
    rollout_id         VARCHAR NOT NULL,       -- the first rollout with this text (identical ones are one solution)
    parent_solution_id VARCHAR NOT NULL,       -- the solution whose labelling reused it
    parent_step        INTEGER NOT NULL,       -- the prefix length it continued (0: the bare question)
    run_id             VARCHAR NOT NULL,
    created_at         TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (solution_id, label_key)
);
CREATE INDEX reused_rollouts_problem ON reused_rollouts (problem_id);
