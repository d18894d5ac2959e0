-- Drop the run's claims on the given keys (their work is stored), or all its claims.
DELETE FROM claims WHERE run_id = $run AND ($all OR work_key IN (SELECT key FROM released));
