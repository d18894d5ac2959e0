-- Every rollout belongs to a stored work unit and to an existing solution step.
-- (Step 0, a root rollout from the bare question, belongs to an existing solution.)
-- fix: the store was edited by hand; delete the listed rollouts or restore the missing steps from a backup.
SELECT r.rollout_id, r.solution_id, r.step_index
FROM rollouts r
LEFT JOIN work_units u USING (unit_id)
LEFT JOIN steps st ON st.solution_id = r.solution_id AND st.step_index = r.step_index
LEFT JOIN solutions s ON s.solution_id = r.solution_id
WHERE u.unit_id IS NULL OR (r.step_index > 0 AND st.solution_id IS NULL) OR s.solution_id IS NULL
LIMIT 20;
