-- ProcessBench results of a study's runs ($run_ids).
SELECT run_id, model_id, split, samples, threshold, threshold_source, error_accuracy, correct_accuracy, f1
FROM processbench_results
WHERE run_id IN (SELECT unnest($run_ids::VARCHAR[]));
