-- The problems Store.settle() recomputes: those the settling runs ($runs) wrote, but not those
-- that another unsettled run wrote too (they stay live until that run settles them).
WITH unsettled AS (
    SELECT * FROM problem_writers WHERE run_id NOT IN (SELECT run_id FROM settled_runs)
)
SELECT DISTINCT problem_id FROM unsettled
WHERE run_id IN (SELECT unnest($runs::VARCHAR[]))
EXCEPT
SELECT problem_id FROM unsettled
WHERE run_id NOT IN (SELECT unnest($runs::VARCHAR[]))
ORDER BY problem_id;
