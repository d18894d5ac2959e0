-- Rollout counts per round of the `wanted` (problem_id, prefix_hash) prefixes under one
-- evaluation (completer, sampling, strategy, budget): what a labelling strategy replays.
SELECT u.problem_id, u.prefix_hash, u.round, count(*) AS n, count(*) FILTER (WHERE r.correct) AS k
FROM work_units u
JOIN wanted w USING (problem_id, prefix_hash)
JOIN rollouts r USING (unit_id)
WHERE u.completer_model = $completer AND u.params = $params AND u.strategy = $strategy AND u.budget = $budget
GROUP BY u.problem_id, u.prefix_hash, u.round;
