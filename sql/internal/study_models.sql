-- What the report says about each verifier of a study ($model_ids): its data and its cost.
SELECT model_id, kind, target, data_snapshot, val_metrics, solution_tokens, rollout_tokens, training_tokens
FROM prm_models
WHERE model_id IN (SELECT unnest($model_ids::VARCHAR[]));
