-- Label statistics per dataset: volume, HE/SE rates, agreement with gold step labels, cost.
-- Agreement counts step prefixes with rollouts (not final steps) that have a gold label;
-- tokens and tokens/s come from the completed and failed label runs of the dataset.
WITH labels AS (
    SELECT p.dataset,
           count(DISTINCT p.problem_id)                                         AS problems,
           count(DISTINCT e.solution_id)                                        AS solutions,
           count(*)                                                             AS steps,
           round(avg(e.he::INTEGER), 3)                                         AS he_rate,
           round(avg(e.se), 3)                                                  AS mean_se,
           round(avg((e.he = e.gold)::INTEGER) FILTER (WHERE NOT e.from_final_answer), 3) AS he_gold_agreement,
           round(avg(((e.se >= 0.5) = e.gold)::INTEGER) FILTER (WHERE NOT e.from_final_answer), 3) AS se_gold_agreement
    FROM step_estimates e
    JOIN problems p USING (problem_id)
    GROUP BY p.dataset
), rolled AS (  -- distinct rollouts (solutions sharing a prefix share its rollouts): each unit's n
    SELECT p.dataset, sum(u.n)::BIGINT AS rollouts
    FROM work_units u JOIN problems p ON p.problem_id = u.problem_id
    GROUP BY p.dataset
), cost AS (
    SELECT dataset, sum(tokens_generated) AS tokens_generated,
           sum(epoch(finished_at - started_at)) AS run_seconds
    FROM runs
    WHERE flow_name = 'label' AND finished_at IS NOT NULL
    GROUP BY dataset
)
SELECT l.dataset, l.problems, l.solutions, l.steps, coalesce(r.rollouts, 0) AS rollouts,
       l.he_rate, l.mean_se, l.he_gold_agreement, l.se_gold_agreement, c.tokens_generated,
       round(c.tokens_generated / nullif(c.run_seconds, 0), 1) AS tokens_per_s
FROM labels l LEFT JOIN rolled r USING (dataset) LEFT JOIN cost c USING (dataset)
ORDER BY l.dataset;
