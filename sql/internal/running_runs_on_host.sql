-- Runs still marked running by processes on this host (a dead pid means the run crashed).
SELECT run_id, pid FROM runs WHERE status = 'running' AND host = $host;
