-- A lake's own tables, created with the derived schema (tasks/lake.py). Insert-only, like every
-- table that concurrent writers share in a lake.

-- Heartbeats of runs' work leases: a claim lives until the latest beat of its run (or its own
-- expiry, whichever is later). The file store updates claims.expires_at instead.
CREATE TABLE lease_beats (
    run_id      VARCHAR NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

-- One row, updated by every claim: two claims at once then change the same table, so DuckLake
-- commits one and fails the other, which retries and sees the first one's claims. This makes
-- claiming serial (claims are rare: one per batch) while the data itself is only inserted.
CREATE TABLE lease_clock (
    tick        BIGINT NOT NULL
);
INSERT INTO lease_clock VALUES (0);

-- Versions of schema objects rewritten only when they change (views and macros): the newest
-- row per name counts.
CREATE TABLE lake_objects (
    name        VARCHAR NOT NULL,
    digest      VARCHAR NOT NULL,
    written_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);
