-- How long a study's stages took, from what the store records (so a resumed study still adds up):
-- its flow runs ($run_ids: label, evaluate, processbench) by start and end, its trainings
-- ($model_ids) by the training loop's measured seconds (model loading and data reads excluded).
SELECT flow_name AS stage, run_id AS result_id, epoch(finished_at - started_at) AS seconds
FROM runs
WHERE run_id IN (SELECT unnest($run_ids::VARCHAR[])) AND finished_at IS NOT NULL
UNION ALL
SELECT 'train', model_id, TRY_CAST(val_metrics ->> 'train_seconds' AS DOUBLE)
FROM prm_models
WHERE model_id IN (SELECT unnest($model_ids::VARCHAR[]))
ORDER BY stage, result_id;
