-- Every work unit holds exactly its round's rollouts (a unit is stored whole or not at all).
-- fix: delete the listed units and their rollouts, then rerun the same `prmf label` command to redo them.
SELECT u.unit_id, u.n, count(r.rollout_id) AS rollouts
FROM work_units u
LEFT JOIN rollouts r USING (unit_id)
GROUP BY u.unit_id, u.n
HAVING count(r.rollout_id) <> u.n
LIMIT 20;
