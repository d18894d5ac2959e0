-- Heartbeat: extend every lease the run holds.
UPDATE claims SET expires_at = current_timestamp + to_milliseconds($lease_ms) WHERE run_id = $run;
