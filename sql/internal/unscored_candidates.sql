-- Candidates of a pool that model $model_id has not scored yet, in a stable order.
SELECT c.problem_id, c.candidate_index, c.question, c.steps
FROM eval_candidates c
ANTI JOIN eval_scores s
    ON s.model_id = $model_id AND s.pool_id = c.pool_id AND s.problem_id = c.problem_id
   AND s.candidate_index = c.candidate_index
WHERE c.pool_id = $pool_id
ORDER BY c.problem_id, c.candidate_index;
