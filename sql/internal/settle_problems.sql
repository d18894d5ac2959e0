-- The problems Store.settle() recomputes: those the settling runs ($runs) wrote, but not those
-- that another unsettled run wrote too (they stay live until that run settles them).
WITH touched AS (
    SELECT problem_id, run_id FROM work_units
    UNION
    SELECT problem_id, run_id FROM solutions
    UNION
    SELECT s.problem_id, l.run_id FROM step_labels l JOIN solutions s USING (solution_id)
), unsettled AS (
    SELECT * FROM touched WHERE run_id NOT IN (SELECT run_id FROM settled_runs)
)
SELECT DISTINCT problem_id FROM unsettled
WHERE run_id IN (SELECT unnest($runs::VARCHAR[]))
EXCEPT
SELECT problem_id FROM unsettled
WHERE run_id NOT IN (SELECT unnest($runs::VARCHAR[]))
ORDER BY problem_id;
