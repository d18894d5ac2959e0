-- A lake's claim (sql/internal/claim.sql on a file store): the same rule, but claims are only
-- inserted. A key's newest claim row is the one that counts; it is free when absent, this
-- run's, released, expired (past its own expiry and its run's latest heartbeat), or held by a
-- run no longer running. Run in one transaction with tick_lease_clock before it (see lease_clock)
-- and claimed after it (DuckLake has no RETURNING).
WITH current_claims AS (
    SELECT work_key, arg_max(run_id, claimed_at) AS run_id, arg_max(kind, claimed_at) AS kind,
           arg_max(expires_at, claimed_at) AS expires_at
    FROM claims
    WHERE work_key IN (SELECT key FROM wanted)
    GROUP BY work_key
), beats AS (
    SELECT run_id, max(expires_at) AS beat FROM lease_beats GROUP BY run_id
)
INSERT INTO claims (work_key, kind, run_id, claimed_at, expires_at)
SELECT w.key, $kind, $run, current_timestamp, current_timestamp + to_milliseconds($lease_ms)
FROM wanted w
LEFT JOIN current_claims c ON c.work_key = w.key
LEFT JOIN runs r ON r.run_id = c.run_id
LEFT JOIN beats b ON b.run_id = c.run_id
WHERE c.work_key IS NULL
   OR c.run_id = $run
   OR c.kind = 'released'
   OR greatest(c.expires_at, coalesce(b.beat, c.expires_at)) < current_timestamp
   OR coalesce(r.status, 'running') <> 'running'
ORDER BY w.position
LIMIT $limit;
