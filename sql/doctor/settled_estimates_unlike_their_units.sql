-- Every settled problem's stored estimates (settled_* tables, migration 015) are what its units give now.
-- fix: run `prmf settle --all` to recompute every problem's settled estimates (they were edited by hand, or a run wrote after it was marked finished).
WITH settled AS (
    SELECT problem_id FROM problems WHERE problem_id NOT IN (SELECT problem_id FROM unsettled_problems)
), ids AS (
    SELECT list(problem_id) AS problem_ids FROM settled
), differing AS (
    (SELECT 'step_estimates' AS rows_of, problem_id FROM (
        (SELECT * FROM settled_step_estimates WHERE problem_id IN (SELECT problem_id FROM settled)
         EXCEPT ALL SELECT * FROM step_estimates_of((SELECT problem_ids FROM ids)))
        UNION ALL
        (SELECT * FROM step_estimates_of((SELECT problem_ids FROM ids))
         EXCEPT ALL SELECT * FROM settled_step_estimates WHERE problem_id IN (SELECT problem_id FROM settled))))
    UNION ALL
    (SELECT 'labelled_estimates', problem_id FROM (
        (SELECT * FROM settled_labelled_estimates WHERE problem_id IN (SELECT problem_id FROM settled)
         EXCEPT ALL SELECT * FROM labelled_estimates_of((SELECT problem_ids FROM ids)))
        UNION ALL
        (SELECT * FROM labelled_estimates_of((SELECT problem_ids FROM ids))
         EXCEPT ALL SELECT * FROM settled_labelled_estimates WHERE problem_id IN (SELECT problem_id FROM settled))))
    UNION ALL
    (SELECT 'step_values', problem_id FROM (
        (SELECT * FROM settled_step_values WHERE problem_id IN (SELECT problem_id FROM settled)
         EXCEPT ALL SELECT * FROM step_values_of((SELECT problem_ids FROM ids)))
        UNION ALL
        (SELECT * FROM step_values_of((SELECT problem_ids FROM ids))
         EXCEPT ALL SELECT * FROM settled_step_values WHERE problem_id IN (SELECT problem_id FROM settled))))
)
SELECT rows_of, problem_id, count(*) AS differing_rows
FROM differing
GROUP BY ALL
ORDER BY rows_of, problem_id
LIMIT 20;
