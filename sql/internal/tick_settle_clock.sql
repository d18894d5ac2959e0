-- Serialize settles (see settle_clock in sql/ddl/015_settled_estimates.sql).
UPDATE settle_clock SET tick = tick + 1;
