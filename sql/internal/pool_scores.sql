-- One model's cached scores of a pool's candidates (NULL entries: steps cut by truncation).
SELECT problem_id, candidate_index, step_scores, truncated
FROM eval_scores
WHERE model_id = $model_id AND pool_id = $pool_id;
