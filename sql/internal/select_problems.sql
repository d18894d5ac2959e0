-- Problems by id (the `ids` Arrow table is registered by the store), in source order. A problem
-- imported without a gold answer (prmf import: meta.gold_unknown) is never given to the factory:
-- its rollouts could not be graded.
SELECT p.* FROM problems p JOIN ids USING (problem_id)
WHERE NOT coalesce(try_cast(json_extract(p.meta, '$.gold_unknown') AS BOOLEAN), false)
ORDER BY p.dataset, p.split, p.source_row;
