-- Every trained reward model: what it is, what data it saw, how it scored on held-out problems.
CREATE TABLE prm_models (
    model_id          VARCHAR PRIMARY KEY,     -- <kind>-<target>-<utc time>-<hash>
    kind              VARCHAR NOT NULL CHECK (kind IN ('prm', 'orm')),
    base_model        VARCHAR NOT NULL,
    target            VARCHAR NOT NULL,        -- he | se | pav (prm), correct (orm)
    path              VARCHAR NOT NULL,        -- checkpoint folder (save_pretrained + prm.json)
    data_snapshot     JSON NOT NULL,           -- problems, solutions, steps, last rollout time/run used
    hyperparameters   JSON NOT NULL,
    val_metrics       JSON NOT NULL,
    run_id            VARCHAR,                 -- the Prefect flow run that trained it
    promoted          BOOLEAN NOT NULL DEFAULT false,
    created_at        TIMESTAMP NOT NULL DEFAULT current_timestamp
);
