-- step_estimates agrees with counts recomputed from the raw rollouts (all rounds of an evaluation pooled).
-- fix: the step_estimates view is stale or edited; reopen the store with a writable `prmf` command to recreate it.
WITH recomputed AS (
    SELECT st.solution_id, st.step_index, arg_min(u.unit_id, u.round) AS unit_id,
           count(*) AS n, count(*) FILTER (WHERE r.correct) AS k
    FROM steps st
    JOIN solutions s USING (solution_id)
    JOIN work_units u ON u.problem_id = s.problem_id AND u.prefix_hash = st.prefix_hash
    JOIN rollouts r ON r.unit_id = u.unit_id
    WHERE st.step_index < s.num_steps AND u.step_index > 0
    GROUP BY st.solution_id, st.step_index, u.completer_model, u.params, u.strategy, u.budget
)
SELECT c.solution_id, c.step_index, c.n, c.k, e.n AS view_n, e.k AS view_k
FROM recomputed c
LEFT JOIN step_estimates e USING (solution_id, step_index, unit_id)
WHERE e.n IS DISTINCT FROM c.n OR e.k IS DISTINCT FROM c.k OR e.se IS DISTINCT FROM c.k / c.n
LIMIT 20;
