-- Every rollout belongs to a stored work unit and to an existing solution step.
-- fix: the store was edited by hand; delete the listed rollouts or restore the missing steps from a backup.
SELECT r.rollout_id, r.solution_id, r.step_index
FROM rollouts r
LEFT JOIN work_units u USING (unit_id)
LEFT JOIN steps st ON st.solution_id = r.solution_id AND st.step_index = r.step_index
WHERE u.unit_id IS NULL OR st.solution_id IS NULL
LIMIT 20;
