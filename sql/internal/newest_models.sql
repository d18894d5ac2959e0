-- The newest registered model ids (for "did you mean" messages).
SELECT model_id FROM prm_models ORDER BY created_at DESC LIMIT 5;
