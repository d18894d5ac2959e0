-- Live work leases per run (a lake's version of sql/queries/claims.sql: claims there are only
-- inserted, so a key's newest claim counts, and 'released' ones are history).
WITH current_claims AS (
    SELECT work_key, arg_max(run_id, claimed_at) AS run_id, arg_max(kind, claimed_at) AS kind,
           arg_max(claimed_at, claimed_at) AS claimed_at, arg_max(expires_at, claimed_at) AS expires_at
    FROM claims GROUP BY work_key
), beats AS (
    SELECT run_id, max(expires_at) AS beat FROM lease_beats GROUP BY run_id
)
SELECT c.run_id, r.status AS run_status, r.host, r.pid, c.kind, count(*) AS claimed,
       min(c.claimed_at) AS since, max(greatest(c.expires_at, coalesce(b.beat, c.expires_at))) AS expires
FROM current_claims c LEFT JOIN runs r USING (run_id) LEFT JOIN beats b USING (run_id)
WHERE c.kind <> 'released'
GROUP BY ALL
ORDER BY since;
