-- One registered reward model.
SELECT * FROM prm_models WHERE model_id = $model_id;
