-- Training-ready step labels: one row per step of every fully labelled solution (every step has
-- an estimate). Estimates from several evaluations of one prefix (other completers, budgets or
-- strategies) are pooled; a step with rollouts takes HE and SE from them, a step with inferred
-- labels only (`inferred`) takes HE from them and has no SE. Its row count outside test splits
-- is the factory's measure of data growth. Imported solutions (prmf import, generator
-- `import:<format>`) are never in it: their labels are no factory estimates (a one-step imported
-- solution would otherwise be complete through its final answer alone).
CREATE OR REPLACE VIEW labelled_steps AS
WITH est AS (
    SELECT solution_id, step_index,
           CASE WHEN sum(n) > 0 THEN sum(k) > 0 ELSE bool_or(he) END AS he,
           sum(k)::DOUBLE / nullif(sum(n), 0) AS se,
           bool_and(source = 'inferred') AS inferred
    FROM step_estimates
    GROUP BY ALL
), complete AS (
    SELECT s.solution_id
    FROM solutions s JOIN est e USING (solution_id)
    WHERE s.generator_model NOT LIKE 'import:%'
    GROUP BY s.solution_id, s.num_steps
    HAVING count(*) = s.num_steps
)
SELECT p.problem_id, p.dataset, p.split, p.question, p.answer_kind,
       s.solution_id, s.correct AS solution_correct, st.step_index, st.text, e.he, e.se, e.inferred
FROM complete c
JOIN solutions s USING (solution_id)
JOIN problems p ON p.problem_id = s.problem_id
JOIN steps st ON st.solution_id = s.solution_id
JOIN est e ON e.solution_id = st.solution_id AND e.step_index = st.step_index;
