-- Versions of the migrations this store has applied.
SELECT version FROM schema_migrations;
