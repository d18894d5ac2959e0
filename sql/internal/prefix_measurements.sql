-- Rollout counts per evaluation and round of the `wanted` (problem_id, prefix_hash) prefixes
-- under one completer, sampling and budget: what a labelling strategy replays.
SELECT u.problem_id, u.prefix_hash, u.strategy, u.round, count(*) AS n, count(*) FILTER (WHERE r.correct) AS k
FROM work_units u
JOIN wanted w USING (problem_id, prefix_hash)
JOIN rollouts r USING (unit_id)
WHERE u.completer_model = $completer AND u.params = $params AND u.budget = $budget
GROUP BY u.problem_id, u.prefix_hash, u.strategy, u.round;
