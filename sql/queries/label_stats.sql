-- Label statistics per dataset: volume, HE/SE rates and cost.
SELECT p.dataset,
       count(DISTINCT p.problem_id)                         AS problems,
       count(DISTINCT e.solution_id)                        AS solutions,
       count(*)                                             AS steps,
       sum(e.n) FILTER (WHERE NOT e.from_final_answer)      AS rollouts,
       round(avg(e.he::INTEGER), 3)                         AS he_rate,
       round(avg(e.se), 3)                                  AS mean_se,
       round(avg(e.gold::INTEGER), 3)                       AS gold_rate
FROM step_estimates e
JOIN problems p USING (problem_id)
GROUP BY p.dataset
ORDER BY p.dataset;
