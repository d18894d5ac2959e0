-- Training-ready step labels: one row per step of every fully labelled solution (every step has
-- an estimate). Estimates from several evaluations of one prefix (other completers, budgets or
-- strategies) are pooled; a step with rollouts takes HE and SE from them, a step with inferred
-- labels only (`inferred`) takes HE from them and has no SE. Its row count outside test splits
-- is the factory's measure of data growth. Imported solutions (prmf import, generator
-- `import:<format>`) are never in it: their labels are no factory estimates (a one-step imported
-- solution would otherwise be complete through its final answer alone).
-- labelled_estimates_of(problem_ids) computes the pooled estimates of those problems' fully
-- labelled solutions; settled problems keep them in settled_labelled_estimates (migration 015, see
-- unsettled_problems).
CREATE OR REPLACE MACRO labelled_estimates_of(problem_ids) AS TABLE
WITH est AS (
    SELECT solution_id, step_index, problem_id,  -- problem_id (one per solution) lets a problem filter in
           CASE WHEN sum(n) > 0 THEN sum(k) > 0 ELSE bool_or(he) END AS he,
           sum(k)::DOUBLE / nullif(sum(n), 0) AS se,
           bool_and(source = 'inferred') AS inferred
    FROM step_estimates_of(problem_ids)
    GROUP BY ALL
), counted AS (  -- a window, not a join back: a problem filter reaches the estimates
    SELECT e.*, s.num_steps, s.generator_model,
           count(*) OVER (PARTITION BY e.problem_id, e.solution_id) AS estimated_steps
    FROM est e
    JOIN (SELECT * FROM solutions WHERE problem_id IN (SELECT unnest(problem_ids))) s USING (solution_id)
)
SELECT solution_id, step_index, problem_id, he, se, inferred
FROM counted
WHERE estimated_steps = num_steps AND generator_model NOT LIKE 'import:%';

-- Every problem's, computed from its units, settled or not.
CREATE OR REPLACE VIEW labelled_estimates_live AS
SELECT * FROM labelled_estimates_of((SELECT list(problem_id) FROM problems));

-- Settled problems' pooled estimates as stored, unsettled ones' computed from their units.
CREATE OR REPLACE VIEW labelled_steps AS
WITH est AS (
    SELECT * FROM settled_labelled_estimates
    WHERE problem_id NOT IN (SELECT problem_id FROM unsettled_problems)
    UNION ALL
    SELECT * FROM labelled_estimates_of((SELECT list(problem_id) FROM unsettled_problems))
)
SELECT p.problem_id, p.dataset, p.split, p.question, p.answer_kind,
       s.solution_id, s.correct AS solution_correct, st.step_index, st.text, e.he, e.se, e.inferred
FROM est e
JOIN solutions s USING (solution_id)
JOIN problems p ON p.problem_id = s.problem_id
JOIN steps st ON st.solution_id = e.solution_id AND st.step_index = e.step_index;
