-- Runs whose rows Store.settle() may store as settled estimates: they wrote some problem's
-- estimates (problem_writers), are not settled yet, and are not running (a running run may still
-- write; a crashed one is marked so by the next run of its flow, tasks/runs.py).
SELECT DISTINCT run_id FROM problem_writers
WHERE run_id NOT IN (SELECT run_id FROM settled_runs)
  AND run_id NOT IN (SELECT run_id FROM runs WHERE status = 'running')
ORDER BY run_id;
