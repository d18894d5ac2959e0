-- Serialize claims (see lease_clock in sql/lake/schema.sql).
UPDATE lease_clock SET tick = tick + 1;
