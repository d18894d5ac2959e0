-- One model's scores of a pool's candidates with their correctness and length (scorer diagnostics).
SELECT c.problem_id, c.candidate_index, c.correct, c.num_tokens, json_array_length(c.steps) AS num_steps,
       s.step_scores, s.truncated
FROM eval_candidates c
JOIN eval_scores s USING (pool_id, problem_id, candidate_index)
WHERE s.model_id = $model_id AND c.pool_id = $pool_id
ORDER BY c.problem_id, c.candidate_index;
