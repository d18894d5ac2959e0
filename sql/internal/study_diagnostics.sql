-- Scorer diagnostics of a study's evaluation runs ($run_ids) on their test pools, for the report.
SELECT run_id, dataset, split, model_id, aggregation, candidates, correct, truncated, auc, spearman_steps,
       spearman_tokens
FROM eval_diagnostics
WHERE run_id IN (SELECT unnest($run_ids::VARCHAR[])) AND split <> 'validation';
