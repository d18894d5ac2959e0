-- Every distinct non-final step prefix (problem, prefix text) with an HE label, pooled as in
-- labelled_steps (rollouts first, else inferred; an inferred HE = 1 wins: it is proven by a correct
-- rollout, HE = 0 only assumed), whether it was inferred, and its gold label: what `prmf bench
-- label` compares. Prefixes, not (solution, step) pairs: solutions sharing a prefix (a reused
-- rollout shares its parent's) count it once.
SELECT e.problem_id, st.prefix_hash,
       CASE WHEN sum(e.n) > 0 THEN sum(e.k) > 0 ELSE bool_or(e.he) END AS he,
       bool_and(e.source = 'inferred') AS inferred,
       any_value(e.gold) AS gold
FROM step_estimates e
JOIN steps st USING (solution_id, step_index)
WHERE NOT e.from_final_answer
GROUP BY e.problem_id, st.prefix_hash;
