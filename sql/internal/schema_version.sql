-- The newest migration applied to this store.
SELECT max(version) FROM schema_migrations;
