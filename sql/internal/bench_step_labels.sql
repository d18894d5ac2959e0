-- Every non-final step's HE label (pooled as in labelled_steps: rollouts first, else inferred),
-- whether it was inferred, and its gold label: what `prmf bench label` compares.
SELECT e.solution_id, e.step_index, any_value(e.problem_id) AS problem_id,
       CASE WHEN sum(e.n) > 0 THEN sum(e.k) > 0 ELSE bool_or(e.he) END AS he,
       bool_and(e.source = 'inferred') AS inferred,
       any_value(e.gold) AS gold
FROM step_estimates e
WHERE NOT e.from_final_answer
GROUP BY e.solution_id, e.step_index;
