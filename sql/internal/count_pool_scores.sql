-- How many of a pool's candidates model $model_id scored ('file': scores given in a pool file).
SELECT count(*) FROM eval_scores WHERE model_id = $model_id AND pool_id = $pool_id;
