-- Runs whose rows Store.settle() may store as settled estimates: they wrote solutions, units or
-- inferred labels, are not settled yet, and are not running (a running run may still write; a
-- crashed one is marked so by the next run of its flow, tasks/runs.py).
SELECT run_id FROM (
    SELECT DISTINCT run_id FROM work_units
    UNION
    SELECT DISTINCT run_id FROM solutions
    UNION
    SELECT DISTINCT run_id FROM step_labels
)
WHERE run_id NOT IN (SELECT run_id FROM settled_runs)
  AND run_id NOT IN (SELECT run_id FROM runs WHERE status = 'running')
ORDER BY run_id;
