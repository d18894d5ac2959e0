-- Every solution made from a rollout (+reuse) is that rollout: stored, ending in the rollout's text,
-- graded as it was, and continuing a stored prefix of its problem.
-- fix: delete the listed reused_rollouts rows with their solutions' rows and their parents' labelled_solutions rows, then rerun the same `prmf label` command
SELECT rr.solution_id, rr.rollout_id, rr.parent_solution_id, rr.parent_step
FROM reused_rollouts rr
LEFT JOIN solutions s USING (solution_id)
LEFT JOIN rollouts r USING (rollout_id)
LEFT JOIN work_units u USING (unit_id)
WHERE s.solution_id IS NULL OR r.rollout_id IS NULL
   OR NOT ends_with(s.text, r.text) OR s.correct <> r.correct
   OR u.problem_id <> rr.problem_id OR s.problem_id <> rr.problem_id
LIMIT 20;
