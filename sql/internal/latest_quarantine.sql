-- The newest quarantined rows (what `prmf ingest` shows after loading).
SELECT source, line, reason FROM quarantine ORDER BY created_at DESC, line LIMIT 10;
