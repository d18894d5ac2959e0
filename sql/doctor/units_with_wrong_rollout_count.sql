-- Every work unit holds exactly its budget of rollouts (a unit is stored whole or not at all).
-- fix: delete the listed units and their rollouts, then rerun the same `prmf label` command to redo them.
SELECT u.unit_id, u.budget, count(r.rollout_id) AS rollouts
FROM work_units u
LEFT JOIN rollouts r USING (unit_id)
GROUP BY u.unit_id, u.budget
HAVING count(r.rollout_id) <> u.budget
LIMIT 20;
