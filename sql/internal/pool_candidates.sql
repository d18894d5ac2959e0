-- A pool's candidates per problem, in candidate order. num_tokens is NULL for external pools
-- (their files carry no token counts).
SELECT c.problem_id, c.candidate_index, c.question, c.steps, c.final_answer, c.correct,
       CASE WHEN p.source = 'generated' THEN c.num_tokens END AS num_tokens
FROM eval_candidates c
JOIN eval_pools p USING (pool_id)
WHERE c.pool_id = $pool_id
ORDER BY c.problem_id, c.candidate_index;
