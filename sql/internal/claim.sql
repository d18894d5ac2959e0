-- Claim up to $limit of the wanted keys (in $wanted.position order) for run $run: keys nobody
-- holds, keys this run already holds, expired leases, and leases of runs no longer running.
INSERT INTO claims (work_key, kind, run_id, claimed_at, expires_at)
SELECT w.key, $kind, $run, current_timestamp, current_timestamp + to_milliseconds($lease_ms)
FROM wanted w
LEFT JOIN claims c ON c.work_key = w.key
LEFT JOIN runs r ON r.run_id = c.run_id
WHERE c.work_key IS NULL
   OR c.run_id = $run
   OR c.expires_at < current_timestamp
   OR coalesce(r.status, 'running') <> 'running'
ORDER BY w.position
LIMIT $limit
ON CONFLICT (work_key) DO UPDATE
SET kind = excluded.kind, run_id = excluded.run_id, claimed_at = excluded.claimed_at, expires_at = excluded.expires_at
RETURNING work_key;
