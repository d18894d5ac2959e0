-- The keys the lake's claim statement just claimed, in the same transaction (same timestamp).
SELECT work_key FROM claims
WHERE run_id = $run AND kind = $kind AND claimed_at = current_timestamp AND work_key IN (SELECT key FROM wanted);
