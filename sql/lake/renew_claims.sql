-- A lake's heartbeat (sql/internal/renew_claims.sql on a file store): one more beat row.
INSERT INTO lease_beats (run_id, expires_at) VALUES ($run, current_timestamp + to_milliseconds($lease_ms));
