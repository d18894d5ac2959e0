-- Make $model_id the promoted model of its kind; the previously promoted one is demoted.
UPDATE prm_models SET promoted = (model_id = $model_id)
WHERE kind = (SELECT kind FROM prm_models WHERE model_id = $model_id)
  AND (promoted OR model_id = $model_id);
