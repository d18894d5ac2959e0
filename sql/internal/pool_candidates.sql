-- A pool's candidates per problem, in candidate order.
SELECT problem_id, candidate_index, question, steps, final_answer, correct
FROM eval_candidates
WHERE pool_id = $pool_id
ORDER BY problem_id, candidate_index;
