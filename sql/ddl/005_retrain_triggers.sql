-- Growth triggers: one row per label run whose growth event marked retraining due. A promoted
-- PRM's baseline triggers again only after another threshold of labelled steps, so crossing the
-- threshold starts exactly one retrain, even when label runs finish while it is still running.
CREATE TABLE retrain_triggers (
    run_id          VARCHAR PRIMARY KEY,       -- the label flow run whose event triggered
    dataset         VARCHAR NOT NULL,          -- what that run labelled
    baseline_model  VARCHAR,                   -- the promoted PRM then (NULL: none yet)
    labelled_steps  BIGINT NOT NULL,           -- labelled steps outside test splits at the trigger
    new_steps       BIGINT NOT NULL,           -- ... of which arrived since the baseline's snapshot
    threshold       INTEGER NOT NULL,
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp
);
