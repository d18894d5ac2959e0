-- Labelling strategies side by side: per strategy and budget N, the solutions whose labelling
-- finished, their measured / inferred / unlabelled (open) steps, contradictions, filtered
-- solutions, and the rollouts and tokens of the label runs that used the strategy.
WITH run_cost AS (
    SELECT coalesce(r.label_strategy, 'naive') AS strategy,
           count(ro.rollout_id) AS rollouts,
           coalesce(sum(ro.num_tokens), 0) AS tokens
    FROM runs r
    JOIN rollouts ro USING (run_id)
    WHERE r.flow_name = 'label'
    GROUP BY 1
)
SELECT l.strategy, l.budget AS n,
       count(*) AS solutions,
       sum(l.measured_steps) AS measured_steps,
       sum(l.inferred_steps) AS inferred_steps,
       sum(l.open_steps) AS open_steps,
       sum(l.contradictions) AS contradictions,
       count(*) FILTER (WHERE l.filtered IS NOT NULL) AS filtered_solutions,
       any_value(c.rollouts) AS rollouts,
       any_value(c.tokens) AS tokens
FROM labelled_solutions l
LEFT JOIN run_cost c USING (strategy)
GROUP BY l.strategy, l.budget
ORDER BY l.strategy, l.budget;
