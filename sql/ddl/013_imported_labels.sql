-- prmf import (tasks/interchange/imports.py): public labelled datasets (Math-Shepherd, PRM800K,
-- ProcessBench, TRL, OpenRLHF, MATH-APS) stored as problems, solutions and steps like the
-- factory's own, with their step labels kept apart: they were not measured by the factory's
-- rollouts, so they are no step_estimates and never count as the factory's growth (labelled_steps
-- leaves imported solutions out). Stores made before it keep every row; both tables start empty.

-- One import of one file into one dataset split. The key is content-addressed, so importing the
-- same file again into the same place is recognised and stores nothing new.
CREATE TABLE imports (
    import_id    VARCHAR PRIMARY KEY,          -- hash(format, sha256 of the file, dataset, split)
    format       VARCHAR NOT NULL,             -- math-shepherd | trl | openrlhf | prm800k | processbench | math-aps | math-aps-tree
    source       VARCHAR NOT NULL,             -- the path as given
    sha256       VARCHAR NOT NULL,             -- of the file's bytes (a folder: of its files, in name order)
    dataset      VARCHAR NOT NULL,
    split        VARCHAR NOT NULL,
    records_read        INTEGER NOT NULL,      -- records (lines, rows, solutions) read
    records_imported    INTEGER NOT NULL,      -- solutions stored with their labels
    records_quarantined INTEGER NOT NULL,      -- records sent to quarantine (file, line, reason)
    run_id       VARCHAR,
    created_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- A step label that came with an imported solution. Steps whose label the source does not give
-- (ProcessBench: the steps after the first error) have no row.
CREATE TABLE imported_step_labels (
    solution_id  VARCHAR NOT NULL,
    step_index   INTEGER NOT NULL CHECK (step_index >= 1),
    import_id    VARCHAR NOT NULL,
    he           BOOLEAN NOT NULL,             -- the hard label: the step is (still) on a right track
    se           DOUBLE CHECK (se IS NULL OR (se >= 0 AND se <= 1)),  -- soft value (MC estimate) or NULL
    rating       INTEGER CHECK (rating IS NULL OR rating IN (-1, 0, 1)),  -- PRM800K's human rating
    PRIMARY KEY (solution_id, step_index, import_id)
);
