-- Implicit PRMs (prmf train --kind implicit) are registered with kind 'implicit'. DuckDB cannot drop
-- a CHECK constraint, so prm_models is rebuilt with the wider one; every row is kept.
CREATE TABLE prm_models_010 (
    model_id          VARCHAR PRIMARY KEY,     -- <kind>-<target or loss>-<utc time>-<hash>
    kind              VARCHAR NOT NULL CHECK (kind IN ('prm', 'orm', 'implicit')),
    base_model        VARCHAR NOT NULL,        -- implicit: also the frozen reference model
    target            VARCHAR NOT NULL,        -- he | se | pav (prm), correct (orm), outcome (implicit)
    path              VARCHAR NOT NULL,        -- checkpoint folder (save_pretrained + prm.json)
    data_snapshot     JSON NOT NULL,           -- problems, solutions, steps, last rollout time/run used
    hyperparameters   JSON NOT NULL,
    val_metrics       JSON NOT NULL,
    run_id            VARCHAR,                 -- the Prefect flow run that trained it
    promoted          BOOLEAN NOT NULL DEFAULT false,
    created_at        TIMESTAMP NOT NULL DEFAULT current_timestamp
);
INSERT INTO prm_models_010
SELECT model_id, kind, base_model, target, path, data_snapshot, hyperparameters, val_metrics, run_id, promoted, created_at
FROM prm_models;
DROP TABLE prm_models;
ALTER TABLE prm_models_010 RENAME TO prm_models;
