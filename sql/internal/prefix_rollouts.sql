-- Every rollout from the `wanted` (problem_id, prefix_hash) prefixes under one completer, sampling
-- and budget, all evaluations and rounds: what +reuse turns into solutions.
SELECT u.problem_id, u.prefix_hash, u.strategy, u.unit_id, u.n, u.params,
       r.rollout_id, r.text, r.correct, r.grade_status, r.num_tokens
FROM work_units u
JOIN wanted w USING (problem_id, prefix_hash)
JOIN rollouts r USING (unit_id)
WHERE u.completer_model = $completer AND u.params = $params AND u.budget = $budget
ORDER BY u.unit_id, r.sample_index;
