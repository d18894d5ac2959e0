-- The quarantined records of one imported file (prmf import's summary), in line order.
SELECT line, reason FROM quarantine WHERE source = $source ORDER BY line LIMIT $n;
