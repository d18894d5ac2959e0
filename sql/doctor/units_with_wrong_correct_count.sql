-- Every work unit's k (its correct rollouts, stored with them; step_estimates sums it) agrees with its rollouts.
-- fix: delete the listed units and their rollouts (k written wrong or rollouts edited by hand), then rerun the same `prmf label` command to redo them.
SELECT u.unit_id, u.k, count(r.rollout_id) FILTER (WHERE r.correct) AS correct_rollouts
FROM work_units u
LEFT JOIN rollouts r USING (unit_id)
GROUP BY u.unit_id, u.k
HAVING u.k IS DISTINCT FROM count(r.rollout_id) FILTER (WHERE r.correct)
ORDER BY u.unit_id
LIMIT 20;
