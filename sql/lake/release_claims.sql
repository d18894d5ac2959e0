-- A lake's release (sql/internal/release_claims.sql on a file store): a newer claim row of kind
-- 'released' for each of the run's keys given (or all it holds), instead of a delete.
INSERT INTO claims (work_key, kind, run_id, claimed_at, expires_at)
SELECT work_key, 'released', $run, current_timestamp, current_timestamp
FROM claims
WHERE run_id = $run AND kind <> 'released' AND ($all OR work_key IN (SELECT key FROM released))
GROUP BY work_key;
