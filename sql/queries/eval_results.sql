-- Accuracies of the latest evaluation run of each pool (test and validation), per method and N (95% bootstrap CI), with the mean generated tokens per problem behind each.
WITH latest AS (
    SELECT pool_id, arg_max(run_id, created_at) AS run_id FROM eval_results GROUP BY pool_id
)
SELECT r.dataset, p.split, r.method, r.aggregation, r.n, round(r.accuracy, 3) AS accuracy,
       round(r.ci_low, 3) AS ci_low, round(r.ci_high, 3) AS ci_high, round(r.tokens, 1) AS tokens,
       r.problems, r.model_id, r.run_id
FROM eval_results r JOIN latest l USING (pool_id, run_id) JOIN eval_pools p USING (pool_id)
ORDER BY p.split DESC, r.dataset, r.method, r.aggregation NULLS FIRST, r.n;
