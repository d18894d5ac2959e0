-- Where process advantages concentrate (PAV, alpha 0.5, Best-of-4 and every separate prover): per
-- prover and position of the step in its solution (first step, middle fifths, final answer), the
-- mean advantage, its mean size, and how often it is negative. See the step_advantages macro.
SELECT prover,
       CASE WHEN a.step_index = 1 THEN '1 first'
            WHEN a.step_index = s.num_steps THEN '7 final'
            ELSE (2 + least(4, floor(5 * (a.step_index - 1) / greatest(s.num_steps - 1, 1))))::INTEGER || ' middle' END
                                                   AS position,
       count(a_mu)                                 AS steps,
       round(avg(a_mu), 3)                         AS mean_advantage,
       round(avg(abs(a_mu)), 3)                    AS mean_abs_advantage,
       round(avg((a_mu < 0)::INTEGER), 3)          AS negative_share,
       round(avg(q_pi), 3)                         AS mean_q_pi
FROM step_advantages() a
JOIN solutions s USING (solution_id)
WHERE a_mu IS NOT NULL
GROUP BY ALL
ORDER BY prover, position;
