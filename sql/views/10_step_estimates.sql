-- Math-Shepherd estimates per solution step, derived from rollouts (never stored twice).
-- A step prefix's estimate comes from the work unit for (problem, prefix); solutions sharing a
-- prefix share its rollouts. The final step has no rollouts: its estimate is the solution's own
-- correctness (n = 1), marked by from_final_answer and a NULL completer_model.
CREATE OR REPLACE VIEW step_estimates AS
WITH unit_counts AS (
    SELECT u.unit_id, u.problem_id, u.prefix_hash, u.completer_model, u.strategy, u.budget,
           count(*) AS n,
           count(*) FILTER (WHERE r.correct) AS k
    FROM work_units u
    JOIN rollouts r USING (unit_id)
    GROUP BY ALL
)
SELECT st.solution_id, st.step_index, s.problem_id,
       uc.completer_model, uc.strategy, uc.unit_id,
       uc.n, uc.k,
       uc.k > 0 AS he,
       uc.k / uc.n AS se,
       st.gold,
       false AS from_final_answer
FROM steps st
JOIN solutions s USING (solution_id)
JOIN unit_counts uc ON uc.problem_id = s.problem_id AND uc.prefix_hash = st.prefix_hash
WHERE st.step_index < s.num_steps
UNION ALL
SELECT st.solution_id, st.step_index, s.problem_id,
       NULL AS completer_model, 'final_answer' AS strategy, NULL AS unit_id,
       1 AS n, s.correct::INTEGER AS k,
       s.correct AS he,
       s.correct::DOUBLE AS se,
       st.gold,
       true AS from_final_answer
FROM steps st
JOIN solutions s USING (solution_id)
WHERE st.step_index = s.num_steps;
