-- Record one applied migration (in the transaction that applied it).
INSERT INTO schema_migrations (version, name) VALUES ($version, $name);
