-- Work leases: a runner claims a batch of work keys (generation requests, label units) before
-- computing them, so two runners on one store never do the same work. A claim expires unless
-- its runner's heartbeat renews it; a claim of a run that is no longer running (finished,
-- failed, crashed) or has expired can be taken over. Claims are deleted in the transaction
-- that stores their work.
CREATE TABLE claims (
    work_key    VARCHAR PRIMARY KEY,           -- generation_id or unit_id
    kind        VARCHAR NOT NULL,              -- generation | label
    run_id      VARCHAR NOT NULL,
    claimed_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
