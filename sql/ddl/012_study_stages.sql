-- prmf study (tasks/study): what each finished stage of a study produced, keyed by a hash of
-- everything that determines it, so a rerun (or a larger study sharing its slices) reuses it.
CREATE TABLE study_stages (
    stage_key   VARCHAR PRIMARY KEY,           -- hash(stage, its settings)
    stage       VARCHAR NOT NULL CHECK (stage IN ('label', 'train', 'evaluate', 'processbench')),
    result_id   VARCHAR NOT NULL,              -- label/evaluate/processbench: the flow run id; train: the model id
    settings    JSON NOT NULL,                 -- what the key was computed from
    run_id      VARCHAR,                       -- the study run that recorded it
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);
