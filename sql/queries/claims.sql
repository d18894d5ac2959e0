-- Live work leases per run: who is working on what right now, and until when.
SELECT c.run_id, r.status AS run_status, r.host, r.pid, c.kind, count(*) AS claimed,
       min(c.claimed_at) AS since, max(c.expires_at) AS expires
FROM claims c LEFT JOIN runs r USING (run_id)
GROUP BY ALL
ORDER BY since;
