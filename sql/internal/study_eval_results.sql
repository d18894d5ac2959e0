-- The accuracies of a study's evaluation runs ($run_ids), with each pool's split, for the report.
SELECT r.run_id, p.dataset, p.split, r.model_id, r.method, r.aggregation, r.n, r.accuracy, r.ci_low, r.ci_high,
       r.problems, r.tokens
FROM eval_results r
JOIN eval_pools p USING (pool_id)
WHERE r.run_id IN (SELECT unnest($run_ids::VARCHAR[]))
ORDER BY r.run_id, p.split, r.method, r.aggregation NULLS FIRST, r.n;
